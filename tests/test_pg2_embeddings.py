"""Issue 12: PG²'s Fig. 4 pose embeddings (G1-CE-L1, G1-HME-L1)."""
import numpy as np
import torch

from reid_aug.config import load_config
from reid_aug.generator.config import PG2Config
from reid_aug.generator.g1_embed import G1CoordinateEmbedding, G1HeatmapEmbedding, pose_map_coordinates
from reid_aug.pose.maps import pose_heatmaps


def test_coordinates_read_back_from_pose_maps():
    kp = -np.ones((1, 18, 2), dtype=np.int64)
    kp[0, 0], kp[0, 1], kp[0, 8] = (20, 30), (64, 32), (100, 10)
    for mode in ("pg2", "gaussian"):
        coords, present = pose_map_coordinates(pose_heatmaps(torch.from_numpy(kp), (128, 64), mode=mode), mode)
        assert present[0].tolist() == [1.0 if i in (0, 1, 8) else 0.0 for i in range(18)]
        expect = torch.tensor([[20 / 127 * 2 - 1, 30 / 63 * 2 - 1], [64 / 127 * 2 - 1, 32 / 63 * 2 - 1]])
        # discs fully inside the image: exact centres; Gaussians are cut by the border a little
        assert torch.allclose(coords[0, :2], expect, atol=1e-5 if mode == "pg2" else 2e-3)
        assert (coords[0, 2] == -1).all()


def test_shapes_parameter_counts_and_recipes():
    size, n, levels, code, pd = (128, 64), 8, 5, 16, 32
    ce = G1CoordinateEmbedding(size, width=n, levels=levels, bottleneck=code, pose_dim=pd)
    hme = G1HeatmapEmbedding(size, width=n, levels=levels, bottleneck=code, pose_dim=pd)
    src, pose = torch.randn(2, 3, *size), torch.randn(2, 18, *size)
    assert ce(src, pose).shape == hme(src, pose).shape == (2, 3, 128, 64)
    h, w = 128 // 16, 64 // 16
    # CE: (3*18 -> pd) + (pd -> pd); the image stem sees 3 channels only; fc_out takes bottleneck + pd
    assert sum(p.numel() for p in ce.pose_code.embed.parameters()) == (54 * pd + pd) + (pd * pd + pd)
    assert ce.stem.in_channels == 3 and ce.fc_out.in_features == code + pd
    # HME: its pose encoder mirrors the image encoder (18 input channels) and ends in an FC to pd
    assert hme.pose_code.stem.in_channels == 18 and hme.pose_code.fc.in_features == h * w * n * levels
    assert hme.stem.in_channels == 3 and hme.fc_out.in_features == code + pd
    for name in ("pg2_ablation_g1_ce_l1", "pg2_ablation_g1_hme_l1"):
        cfg = load_config(PG2Config, name)
        assert cfg.loss.g1 == "l1" and cfg.train.stages == ("g1",)
        assert cfg.model.pose_embedding == name.split("_")[3]


def test_training_steps_lower_the_loss_on_a_fixed_batch(tiny_toy):
    """A few Adam steps on four real toy pairs fit them better: the pose code reaches the decoder."""
    from reid_aug.dataset.market import load_dataset
    from reid_aug.pairs import PosePairDataset, train_pairs

    index = load_dataset(tiny_toy)
    data = PosePairDataset(index, train_pairs(index).iloc[:4], size=(128, 64))
    batch = torch.utils.data.default_collate([data[i] for i in range(4)])
    for cls in (G1CoordinateEmbedding, G1HeatmapEmbedding):
        torch.manual_seed(0)
        net = cls((128, 64), width=8, bottleneck=16, pose_dim=16)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        losses = []
        for _ in range(40):
            loss = (net(batch["src_img"], batch["tgt_pose"]) - batch["tgt_img"]).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        assert losses[-1] < 0.9 * losses[0], (cls.__name__, losses[0], losses[-1])
