"""Deformable GAN (Siarohin et al., CVPR 2018; TPAMI 2019), built from the paper and the official
Keras code (``AliaksandrSiarohin/pose-gan``). Pure modules and functions, to be registered as a
generator family:

- :mod:`.affine`: the 10 part transforms (batched least squares) and part masks ->
  :func:`deformation` ``(src_kp, tgt_kp, size)`` -> ``Deformation(theta, masks, valid)``
- :mod:`.warp`: :func:`deform_skip` (grid_sample per part, mask, max)
- :mod:`.generator`: :class:`DeformableGenerator` (two-stream U-Net)
- :mod:`.discriminator`: :class:`PatchDiscriminator`
- :mod:`.nn_loss`: :func:`nearest_neighbour_loss`, :class:`NearestNeighbourLoss`, :class:`PatchFeatures`
- :mod:`.vgg`: :func:`load_vgg19_conv12` (local torchvision weights only)
"""
from reid_aug.generator.defgan.affine import (NUM_PARTS, PART_NAMES, Deformation, deformation,  # noqa: F401
                                              estimate_affine, part_masks, part_transforms, pixel_to_theta)
from reid_aug.generator.defgan.discriminator import PatchDiscriminator  # noqa: F401
from reid_aug.generator.defgan.generator import DeformableGenerator, level_widths  # noqa: F401
from reid_aug.generator.defgan.nn_loss import NearestNeighbourLoss, PatchFeatures, nearest_neighbour_loss  # noqa: F401
from reid_aug.generator.defgan.warp import deform_skip  # noqa: F401
