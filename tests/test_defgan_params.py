"""Parameter counts of the paper-size Deformable GAN equal the official Keras model's (128x64 Market).

Counted by hand from ``conditional_gan.py`` (``make_generator``/``encoder``/``decoder``/
``make_discriminator``, ``--warp_skip mask --use_input_pose 1 --disc_type call``, 18 heatmaps):

- keras-contrib ``InstanceNormalization()`` has ``axis=None``: one scalar gamma + one scalar beta = 2.
- Conv2D(k x k, cin -> cout, bias) = k*k*cin*cout + cout; the 4x4 convs (down and transposed up)
  have ``use_bias=False``.

Encoder (one stream, ``cin`` input channels): conv3x3 cin->64 (bias), then
  64->128: 16*64*128   = 131,072 + IN 2
  128->256: 16*128*256 = 524,288 + IN 2
  256->512: 16*256*512 = 2,097,152 + IN 2
  512->512: 16*512*512 = 4,194,304 + IN 2
  512->512: 16*512*512 = 4,194,304 (last block: no IN)
  = 11,141,120 + 8 = 11,141,128 + (9*cin*64 + 64)
  source stream (x_a, H_a), cin = 21: 12,096 + 64 = 12,160 -> 11,153,288
  target stream (H_b),      cin = 18: 10,368 + 64 = 10,432 -> 11,151,560
Decoder, skip channels = 2 x encoder widths (warped source ++ target): 1024, 1024, 1024, 512, 256, 128
  up 1024 -> 512:        16*1024*512 = 8,388,608 + IN 2
  up (512+1024) -> 512:  16*1536*512 = 12,582,912 + IN 2
  up (512+1024) -> 512:  16*1536*512 = 12,582,912 + IN 2
  up (512+512) -> 256:   16*1024*256 = 4,194,304 + IN 2
  up (256+256) -> 128:   16*512*128  = 1,048,576 + IN 2
  conv3x3 (128+128) -> 3 (bias): 9*256*3 + 3 = 6,915
  = 38,797,312 + 6,915 + 10 = 38,804,237
G = 11,153,288 + 11,151,560 + 38,804,237 = 61,109,085

Baseline (``--warp_skip none``): one encoder on (x_a, H_a, H_b), cin = 39: 11,141,128 + 22,464 + 64
  = 11,163,656; decoder skips = encoder widths 512, 512, 512, 256, 128, 64:
  16*512*512 + 2*16*1024*512 + 16*768*256 + 16*384*128 + (9*192*3 + 3) + 5*2
  = 4,194,304 + 16,777,216 + 3,145,728 + 786,432 + 5,187 + 10 = 24,908,877
  G_baseline = 36,072,533

Discriminator (``disc_type='call'``), input (x_a, H_a, y, H_b) = 3 + 18 + 3 + 18 = 42 channels:
  conv4x4/2 valid 42->64 (bias): 16*42*64 + 64 = 43,072
  block 64->128:  131,072 + IN 2
  block 128->256: 524,288 + IN 2
  block 256->512: 2,097,152 + IN 2
  block 512->1 (no IN, no bias): 16*512 = 8,192
  D = 2,803,782
"""
import torch

from reid_aug.generator.defgan import DeformableGenerator, PatchDiscriminator

OFFICIAL_G = 61_109_085
OFFICIAL_G_BASELINE = 36_072_533
OFFICIAL_D = 2_803_782


def _count(module):
    return sum(p.numel() for p in module.parameters())


def test_paper_size_parameter_counts_equal_the_official_model():
    with torch.device("meta"):                     # no memory: shapes only
        g = DeformableGenerator((128, 64))
        g_base = DeformableGenerator((128, 64), warp_skip="none")
        d = PatchDiscriminator()
        g_bg = DeformableGenerator((128, 64), use_bg=True)
        d_bg = PatchDiscriminator(use_bg=True)
    assert _count(g) == OFFICIAL_G
    assert _count(g_base) == OFFICIAL_G_BASELINE
    assert _count(d) == OFFICIAL_D
    # TPAMI background: +3 input channels of the target stream's 3x3 conv and of D's first conv
    assert _count(g_bg) == OFFICIAL_G + 9 * 3 * 64
    assert _count(d_bg) == OFFICIAL_D + 16 * 3 * 64
