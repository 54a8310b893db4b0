"""Loss family: hand-computed values, identities, masking, gradients (float64 gradcheck), bf16 safety."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from repgls import create_loss
from repgls import losses as L


def _sp(x: float) -> float:
    """softplus in plain Python."""
    return math.log1p(math.exp(x))


def _batch(b: int = 6, k: int = 4, seed: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, k, generator=g) * 3
    y = (torch.rand(b, k, generator=g) < 0.4).float()
    r = torch.rand(b, k, generator=g) * 1.8 - 0.9
    mask = torch.ones(b, k)
    return z, {"y": y, "r": r, "mask": mask}


COUNTS = torch.tensor([500.0, 50.0, 5.0, 200.0])
N = 1000


# --- bce / focal -----------------------------------------------------------------------------------------
def test_bce_matches_torch_and_hand_value():
    z, b = _batch()
    ref = F.binary_cross_entropy_with_logits(z, b["y"], reduction="none")
    torch.testing.assert_close(L.bce(z, b["y"]), ref)
    assert L.bce(torch.tensor([[2.0]]), torch.tensor([[1.0]])).item() == pytest.approx(_sp(-2.0))
    loss = create_loss("bce")({"logits": z}, b)
    torch.testing.assert_close(loss, ref.mean())


def test_focal_gamma0_is_bce_and_hand_value():
    z, b = _batch()
    torch.testing.assert_close(L.focal(z, b["y"], gamma=0.0), L.bce(z, b["y"]))
    p = 1 / (1 + math.exp(-1.5))  # y = 1, z = 1.5: (1 - p)^2 * -log p
    got = L.focal(torch.tensor([[1.5]]), torch.tensor([[1.0]]), gamma=2.0).item()
    assert got == pytest.approx((1 - p) ** 2 * -math.log(p), rel=1e-6)
    got0 = L.focal(torch.tensor([[1.5]]), torch.tensor([[0.0]]), gamma=2.0, balance=0.25).item()
    assert got0 == pytest.approx(0.25 * p**2 * -math.log(1 - p), rel=1e-6)


# --- gls ----------------------------------------------------------------------------------------------------
def test_gls_r0_is_bce_and_positive_r_is_label_smoothing():
    z, b = _batch()
    torch.testing.assert_close(L.gls(z, b["y"], torch.zeros_like(z)), L.bce(z, b["y"]))
    r = torch.full_like(z, 0.2)  # binary LS with eps = r: target y(1 - r) + r/2
    ls_target = b["y"] * 0.9 + 0.1 * (1 - b["y"])
    ref = F.binary_cross_entropy_with_logits(z, ls_target, reduction="none")
    torch.testing.assert_close(L.gls(z, b["y"], r), ref)


def test_gls_decomposition_and_targets_outside_unit_interval():
    z, b = _batch()
    y, r = b["y"], b["r"]
    t = L.gls_target(y, r)
    assert (t > 1).any() and (t < 0).any()  # negative rates leave [0, 1]
    sym = (F.softplus(z) + F.softplus(-z)) / 2  # (1 - r) BCE(z, y) + r * mean over the two classes
    torch.testing.assert_close(L.gls(z, y, r), (1 - r) * L.bce(z, y) + r * sym)
    # hand value: y = 1, r = -0.5 -> t = 1.25; z = 3
    got = L.gls(torch.tensor([[3.0]]), torch.tensor([[1.0]]), torch.tensor([[-0.5]])).item()
    assert got == pytest.approx(1.25 * _sp(-3.0) - 0.25 * _sp(3.0), rel=1e-6)
    # unbounded below for t > 1: the loss keeps decreasing as the logit grows (documented caveat)
    zz = torch.tensor([[5.0, 20.0, 80.0]])
    vals = L.gls(zz, torch.ones_like(zz), torch.full_like(zz, -0.5))
    assert torch.isfinite(vals).all() and vals[0, 0] > vals[0, 1] > vals[0, 2]
    # huge logits stay finite (stable softplus form)
    big = L.gls(torch.tensor([[1e4, -1e4]]), torch.tensor([[1.0, 0.0]]), torch.tensor([[-0.9, -0.9]]))
    assert torch.isfinite(big).all()


def test_gls_negative_rate_logit_grows_monotonically_unless_clamped():
    """The documented r < 0 pitfall: gradient descent pushes the logit up without bound; max_logit stops it."""
    for max_logit, expect_bounded in ((None, False), (4.0, True)):
        z = torch.zeros(1, 1, requires_grad=True)
        opt = torch.optim.SGD([z], lr=5.0)
        path = []
        for _ in range(60):
            opt.zero_grad()
            L.gls(z, torch.ones_like(z), torch.full_like(z, -0.4), max_logit=max_logit).sum().backward()
            opt.step()
            path.append(z.item())
        assert all(b >= a for a, b in itertools.pairwise(path))
        if expect_bounded:
            assert path[-1] == path[-2] and path[-1] < 4.0 + 5.0 * 0.4  # frozen once past the clamp
        else:
            assert path[-1] > 30 and path[-1] - path[-2] > 0.3  # still growing (gradient -> -0.2 per step)


def test_gls_max_logit_clamps_gradient():
    z = torch.tensor([[30.0, 1.0]], requires_grad=True)
    L.gls(z, torch.ones_like(z), torch.full_like(z, -0.5), max_logit=10.0).sum().backward()
    assert z.grad[0, 0] == 0 and z.grad[0, 1] != 0


# --- pce ----------------------------------------------------------------------------------------------------
def test_pce_branches_continuity_and_slope():
    tau = 0.3
    ztau = math.log(tau / (1 - tau))  # p = tau
    # above tau: CE
    zs = torch.tensor([[ztau + 0.5, 2.0, 5.0]])
    torch.testing.assert_close(L.pce(zs, torch.ones_like(zs), tau), F.softplus(-zs))
    # below tau: linear in p with slope -1/tau
    zl = torch.tensor([[-4.0, -2.0, ztau - 0.3]], dtype=torch.float64)
    p = torch.sigmoid(zl)
    torch.testing.assert_close(
        L.pce(zl, torch.ones_like(zl), tau).double(),
        (1 - p / tau - math.log(tau)).float().double(),
        rtol=1e-6,
        atol=1e-6,
    )
    # continuity of value and of slope dl/dz at p = tau (both sides)
    eps = 1e-4
    zt = torch.tensor([ztau - eps, ztau, ztau + eps], dtype=torch.float64, requires_grad=True)
    vals = L.pce(zt.view(1, 3), torch.ones(1, 3), tau)
    assert vals[0, 0].item() == pytest.approx(-math.log(tau), abs=1e-3)
    assert vals[0, 2].item() == pytest.approx(-math.log(tau), abs=1e-3)
    vals.sum().backward()
    # dl/dz = -(1/tau) p(1-p) on the linear side, -(1 - p) on the log side: both = -(1 - tau) at p = tau
    torch.testing.assert_close(zt.grad, torch.full((3,), -(1 - tau), dtype=torch.float64), atol=1e-3, rtol=0)
    # negatives use CE; bounded for positives: l <= 1 - log(tau)
    zn = torch.tensor([[-3.0, 0.0, 3.0]])
    torch.testing.assert_close(L.pce(zn, torch.zeros_like(zn), tau), F.softplus(zn))
    assert L.pce(torch.tensor([[-100.0]]), torch.ones(1, 1), tau).item() <= 1 - math.log(tau) + 1e-6
    with pytest.raises(ValueError):
        L.pce(zn, zn, tau=3.0)


def test_pu_rm_alias_and_policy_tags():
    assert create_loss("pu-rm").label_policy == "u-ones"
    for pol in ("u-ignore", "u-zeros", "u-ones"):
        m = create_loss(pol)
        assert isinstance(m, L.BCELoss) and m.label_policy == pol


# --- anr ----------------------------------------------------------------------------------------------------
def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _anr_paper_by_hand(z: float, y: float, v: float, beta: float = 10.0, gamma: float = 2.0) -> float:
    """LTML eqs. 1-3 and the focal factor of section 4.1, in plain Python for one entry."""
    u = z - v
    lam = 1 + beta * (1 - _sig(u))
    if y == 1:
        loss, pt = _sp(-u), _sig(u)
    else:
        loss, pt = _sp(lam * u) / lam, _sig(-lam * u)
    return (1 - pt) ** gamma * loss


def test_anr_beta0_gamma0_v0_is_bce():
    z, b = _batch()
    for variant in L.ANR_VARIANTS:
        torch.testing.assert_close(L.anr(z, b["y"], torch.zeros(4), beta=0.0, gamma=0.0, variant=variant),
                                   L.bce(z, b["y"]))
    # beta = 0 with v != 0 is BCE on the biased logit u = z - v
    v = L.class_bias(COUNTS, N)
    torch.testing.assert_close(L.anr(z, b["y"], v, beta=0.0, gamma=0.0), L.bce(z - v, b["y"]))


def test_anr_lambda_comes_from_the_adjusted_logit():
    """The issue's hand computation: u = -3, v = 5.3 (z = 2.3): the paper's lambda is 10.53, the code's 1.91."""
    u, v = -3.0, 5.3
    lam_paper = 1 + 10 * (1 - _sig(u))
    lam_code = 1 + 10 * (1 - _sig(u + v))
    assert lam_paper == pytest.approx(10.53, abs=0.005) and lam_code == pytest.approx(1.91, abs=0.005)
    d = torch.float64
    zt, y0, vt = torch.tensor([[u + v]], dtype=d), torch.zeros(1, 1, dtype=d), torch.tensor([v], dtype=d)
    assert L.anr(zt, y0, vt, gamma=0.0).item() == pytest.approx(_sp(lam_paper * u) / lam_paper, rel=1e-9)
    assert L.anr(zt, y0, vt, gamma=0.0, variant="ltml-code").item() == pytest.approx(
        _sp(lam_code * u) / lam_code, rel=1e-9)


def test_anr_value_and_gradient_equal_the_papers_equation_by_hand():
    """ANR-BCE with focal (paper variant) on a 3 x 4 tensor: every value equals the plain-Python equation, and
    every gradient equals a central finite difference of that equation (the gradient of the stated loss)."""
    z = torch.tensor([[0.5, -1.0, 2.0, 4.0], [-0.3, 0.8, 0.1, -6.0], [1.0, 1.0, -2.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    v = L.class_bias(COUNTS, N).double()
    zz = z.clone().requires_grad_(True)
    got = L.anr(zz, y, v)
    got.sum().backward()
    h = 1e-6
    for i, k in itertools.product(range(3), range(4)):
        zi, yi, vi = z[i, k].item(), y[i, k].item(), v[k].item()
        assert got[i, k].item() == pytest.approx(_anr_paper_by_hand(zi, yi, vi), rel=1e-9, abs=1e-12)
        fd = (_anr_paper_by_hand(zi + h, yi, vi) - _anr_paper_by_hand(zi - h, yi, vi)) / (2 * h)
        assert zz.grad[i, k].item() == pytest.approx(fd, rel=1e-5, abs=1e-9)


def test_anr_module_defaults_are_the_paper():
    loss = create_loss("anr", COUNTS, N)
    assert (loss.variant, loss.beta, loss.gamma, loss.reweight) == ("paper", 10.0, 2.0, False)
    z, b = _batch(b=5, k=4, seed=9)
    torch.testing.assert_close(loss.elementwise({"logits": z}, b), L.anr(z, b["y"], L.class_bias(COUNTS, N)))
    code = create_loss("anr", COUNTS, N, variant="ltml-code")
    assert code.reweight is True  # the code path always applies DB's re-balanced weight
    with pytest.raises(ValueError, match="variant"):
        create_loss("anr", COUNTS, N, variant="nope")


def test_anr_ltml_code_variant_detaches_the_weight_but_not_lambda():
    z = torch.tensor([[0.3]], dtype=torch.float64, requires_grad=True)
    L.anr(z, torch.zeros(1, 1), torch.zeros(1), beta=10.0, gamma=0.0, variant="ltml-code").sum().backward()
    zz = 0.3
    s = _sig(zz)
    lam = 1 + 10 * (1 - s)
    dlam = -10 * s * (1 - s)
    sig = _sig(lam * zz)
    expected = sig * (lam + zz * dlam) / lam  # d/dz softplus(lam(z) z) / lam_detached
    assert z.grad.item() == pytest.approx(expected, rel=1e-6)


def test_class_bias_and_prior():
    v = L.class_bias(COUNTS, N)
    torch.testing.assert_close(v, torch.log(N / COUNTS - 1))
    torch.testing.assert_close(torch.sigmoid(-v), COUNTS / N)  # prior
    with pytest.warns(UserWarning):
        L.class_bias([0.0, 10.0], 10)


# --- db -----------------------------------------------------------------------------------------------------
def test_db_matches_hand_computation():
    counts = [10.0, 2.0, 5.0]
    n_total = 40
    z = torch.tensor([[0.5, -1.0, 2.0], [-0.3, 0.8, 0.1], [1.0, 1.0, -2.0]])
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    alpha, beta, mu, lam, kappa, gamma, bal = 0.1, 10.0, 0.2, 2.0, 0.05, 2.0, 2.0
    got = L.db(z, y, torch.tensor(counts), n_total)
    for i in range(3):
        rep = sum(y[i, k].item() / counts[k] for k in range(3))
        for k in range(3):
            if rep > 0:
                w = alpha + 1 / (1 + math.exp(-beta * ((1 / counts[k]) / rep - mu)))
            else:
                w = alpha + 1.0
            v = math.log(n_total / counts[k] - 1)
            zp = z[i, k].item() - kappa * v / lam
            if y[i, k] == 1:
                bce_val, weight = _sp(-zp), w
            else:
                bce_val, weight = _sp(lam * zp), w / lam
            pt = math.exp(-bce_val)
            expected = bal * (1 - pt) ** gamma * weight * bce_val
            assert got[i, k].item() == pytest.approx(expected, rel=1e-5), (i, k)
    m = create_loss("db", class_counts=counts, num_samples=n_total)
    assert m({"logits": z}, {"y": y}).item() == pytest.approx(got.mean().item(), rel=1e-6)


def test_count_losses_need_counts():
    for name in ("anr", "db"):
        with pytest.raises(ValueError, match="class_counts"):
            create_loss(name)


# --- masking / reduction --------------------------------------------------------------------------------------
def test_mask_and_nan_targets_are_ignored():
    z, b = _batch()
    mask = torch.ones_like(z)
    mask[0, :2] = 0
    y = b["y"].clone()
    y[0, 0] = float("nan")
    zg = z.clone().requires_grad_(True)
    for name in ("bce", "gls", "pce", "focal"):
        loss = create_loss(name)({"logits": zg}, {"y": y, "r": b["r"], "mask": mask})
        ref = L.bce(z, b["y"]) if name == "bce" else None
        assert torch.isfinite(loss)
        if ref is not None:
            assert loss.item() == pytest.approx((ref * mask).sum().item() / mask.sum().item(), rel=1e-6)
        (g,) = torch.autograd.grad(loss, zg)
        assert torch.isfinite(g).all() and (g[0, :2] == 0).all()
    # "sample" reduction: mean per sample then over samples
    per = create_loss("bce", reduction="sample")({"logits": z}, {"y": b["y"], "mask": mask})
    lb = L.bce(z, b["y"])
    expected = torch.stack([(lb[i] * mask[i]).sum() / mask[i].sum() for i in range(z.shape[0])]).mean()
    torch.testing.assert_close(per, expected)
    assert create_loss("bce", reduction="none")({"logits": z}, b).shape == z.shape


# --- llr ----------------------------------------------------------------------------------------------------
def test_llr_k_schedule():
    """The LTML recipe (8 epochs): 10 % more per epoch, capped at 80 %."""
    assert L.llr_k(100, L.llr_rate(0)) == 0
    assert L.llr_k(100, L.llr_rate(1)) == 10
    assert L.llr_k(100, L.llr_rate(3)) == 30  # no float round-up to 31
    assert L.llr_k(100, L.llr_rate(20, schedule="per-epoch")) == 80  # capped at 80 %
    assert L.llr_k(7, L.llr_rate(1)) == 1  # ceil


def test_llr_rejects_the_same_share_at_the_same_point_of_training_for_8_and_30_epochs():
    """An 8-epoch and a 30-epoch run reconsider the same share of entries at the same fraction of training (the
    fraction schedule); the code's absolute per-epoch schedule would reconsider 80 % for most of a 30-epoch run."""
    z, b = _batch(b=16, k=5, seed=4)

    def share(epoch: int, epochs: int) -> int:
        lla = create_loss("lla")
        lla.set_epoch(epoch, epochs)
        lla.elementwise({"logits": z}, b)
        return int(lla.last_selected.sum())

    n_neg = int(((b["y"] == 0) & (b["mask"] > 0)).sum())  # at most every negative can be reconsidered
    assert share(0, 8) == share(0, 30) == 0
    assert share(4, 8) == share(15, 30) == L.llr_k(80, 0.4)  # half-way: 40 % of the B*K entries
    for e in range(30):  # every epoch of the long run is on the 8-epoch run's line: 80 % x (epoch / epochs)
        assert share(e, 30) == min(n_neg, L.llr_k(80, 0.8 * e / 30))
    for e in range(8):
        assert share(e, 8) == min(n_neg, L.llr_k(80, 0.1 * e))  # the LTML recipe itself
    assert L.llr_rate(8, 30, schedule="per-epoch") == pytest.approx(0.8)
    assert L.llr_rate(8, 30) == pytest.approx(0.8 * 8 / 30)
    with pytest.raises(ValueError, match="schedule"):
        create_loss("lla", schedule="sometimes")


def test_lla_drops_exactly_topk_negatives():
    z, b = _batch(b=8, k=5, seed=3)
    b["mask"][1, :] = 0
    lla = create_loss("lla")
    lla.set_epoch(0)
    torch.testing.assert_close(lla({"logits": z}, b), create_loss("bce")({"logits": z}, b))
    lla.set_epoch(2)
    per = lla.elementwise({"logits": z}, b)
    base = L.bce(z, b["y"])
    k = L.llr_k(40, L.llr_rate(2))
    cand = (b["y"] == 0) & (b["mask"] > 0)
    vals = base[cand]
    top = torch.sort(vals, descending=True).values[:k]
    sel = lla.last_selected
    assert int(sel.sum()) == k and bool((sel <= cand).all())
    torch.testing.assert_close(torch.sort(base[sel], descending=True).values, top)
    assert (per[sel] == 0).all()
    keep = ~sel & (b["mask"] > 0)  # masked elements are computed with y zeroed, then reduced away
    torch.testing.assert_close(per[keep], base[keep])
    # the denominator is unchanged (LTML final.mean())
    assert lla({"logits": z}, b).item() == pytest.approx(per[b["mask"] > 0].sum().item() / 35, rel=1e-6)


def test_llm_relabels_topk_negatives_over_any_base():
    z, b = _batch(b=8, k=4, seed=5)
    llm = create_loss("llm", COUNTS, N, base="anr")
    llm.set_epoch(1)
    per = llm.elementwise({"logits": z}, b)
    sel = llm.last_selected
    v = L.class_bias(COUNTS, N)
    base = L.anr(z, b["y"], v)
    assert int(sel.sum()) == L.llr_k(32, L.llr_rate(1))
    flipped = L.anr(z, torch.ones_like(z), v)
    torch.testing.assert_close(per[sel], flipped[sel])
    torch.testing.assert_close(per[~sel], base[~sel])
    # selected are the largest negative losses
    assert base[sel].min() >= base[(b["y"] == 0) & ~sel].max()


@pytest.mark.slow
def test_llr_global_topk_under_simulated_two_rank_gloo(tmp_path):
    """Two gloo processes; k and the threshold are global: rank shards select the global top-k."""
    import torch.multiprocessing as mp

    z, b = _batch(b=8, k=4, seed=11)
    out = tmp_path / "sel"
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "store"), z, b, str(out)), nprocs=2, join=True)
    sel = torch.cat([torch.load(f"{out}{r}.pt") for r in range(2)])
    base = L.bce(z, b["y"])
    k = L.llr_k(32, L.llr_rate(2))
    cand = b["y"] == 0
    top = torch.sort(base[cand], descending=True).values[:k]
    assert int(sel.sum()) == k
    torch.testing.assert_close(torch.sort(base[sel], descending=True).values, top)


def _ddp_worker(rank: int, world: int, store: str, z, b, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        half = z.shape[0] // world
        sl = slice(rank * half, (rank + 1) * half)
        lla = create_loss("lla")
        lla.set_epoch(2)
        lla({"logits": z[sl]}, {k: v[sl] for k, v in b.items()})
        torch.save(lla.last_selected, f"{out}{rank}.pt")
    finally:
        dist.destroy_process_group()


# --- luvit --------------------------------------------------------------------------------------------------
def test_luvit_joint_loss_value_and_mentioned():
    z, b = _batch()
    rate = torch.tanh(torch.randn_like(z))
    loss = create_loss("luvit", rate_weight=0.5)
    expected = L.gls(z, b["y"], b["r"]).mean() + 0.5 * ((rate - b["r"]) ** 2).mean()
    torch.testing.assert_close(loss({"logits": z, "rate": rate}, b), expected)
    mentioned = torch.zeros_like(z)
    mentioned[:, 0] = 1
    got = loss({"logits": z, "rate": rate}, {**b, "mentioned": mentioned})
    exp2 = L.gls(z, b["y"], b["r"]).mean() + 0.5 * ((rate - b["r"])[:, 0] ** 2).mean()
    torch.testing.assert_close(got, exp2)
    with pytest.raises(KeyError, match="rate"):
        loss({"logits": z}, b)


# --- gradients / dtype ----------------------------------------------------------------------------------------
def _all_losses():
    return {
        "bce": create_loss("bce"),
        "focal": create_loss("focal"),
        "gls": create_loss("gls"),
        "pce": create_loss("pce"),
        "anr": create_loss("anr", COUNTS, N),
        "db": create_loss("db", COUNTS, N),
        "lla": create_loss("lla", COUNTS, N, base="anr"),
        "llm": create_loss("llm", base="gls"),
    }


@pytest.mark.parametrize("name", ["bce", "focal", "gls", "pce", "anr", "db"])
def test_gradcheck_float64(name):
    fn = {
        "bce": lambda z, y, r: L.bce(z, y),
        "focal": lambda z, y, r: L.focal(z, y),
        "gls": lambda z, y, r: L.gls(z, y, r),
        "pce": lambda z, y, r: L.pce(z, y),
        "anr": lambda z, y, r: L.anr(z, y, L.class_bias(COUNTS, N).double()),  # the paper's loss: exact gradient
        "db": lambda z, y, r: L.db(z, y, COUNTS, N),
    }[name]
    z, b = _batch(b=3, k=4, seed=2)
    zz = z.double().requires_grad_(True)  # float64 stays float64 inside the losses
    assert fn(zz, b["y"].double(), b["r"].double()).dtype == torch.float64
    assert torch.autograd.gradcheck(
        lambda x: fn(x, b["y"].double(), b["r"].double()), (zz,), eps=1e-6, atol=1e-5
    )


@pytest.mark.parametrize("name", ["bce", "focal", "gls", "pce", "anr", "db", "lla", "llm"])
def test_bf16_finite_and_close_to_fp32(name):
    loss = _all_losses()[name]
    if hasattr(loss, "set_epoch"):
        loss.set_epoch(1)
    z, b = _batch(b=16, k=4, seed=7)
    z16 = z.to(torch.bfloat16).requires_grad_(True)
    z32 = z16.detach().float().requires_grad_(True)
    l16 = loss({"logits": z16}, b)
    l32 = loss({"logits": z32}, b)
    assert l16.dtype == torch.float32 and torch.isfinite(l16)
    torch.testing.assert_close(l16, l32, rtol=1e-5, atol=1e-6)  # the loss runs in fp32 internally
    l16.backward()
    assert z16.grad.dtype == torch.bfloat16 and torch.isfinite(z16.grad.float()).all()
    # extreme bf16 logits stay finite
    zx = torch.tensor([[1e30, -1e30, 80.0, -80.0]] * 2, dtype=torch.bfloat16)
    assert torch.isfinite(loss({"logits": zx}, {k: v[:2] for k, v in b.items()}))


def test_unknown_names_and_shape_errors():
    with pytest.raises(ValueError, match="unknown loss"):
        create_loss("nope")
    with pytest.raises(ValueError, match="reduction"):
        create_loss("gls", reduction="avg")
    with pytest.raises(ValueError, match="shape"):
        create_loss("bce")({"logits": torch.zeros(2, 3)}, {"y": torch.zeros(2, 4)})
    assert set(L.list_losses()) >= {"bce", "focal", "gls", "pce", "anr", "llr", "db", "luvit", "u-ones"}


@settings(max_examples=60, deadline=None)
@given(
    z=st.floats(-60, 60),
    y=st.sampled_from([0.0, 1.0]),
    r=st.floats(-0.99, 0.99),
)
def test_gls_property_linear_in_rate_and_finite(z, y, r):
    zt, yt, rt = (torch.tensor([[v]], dtype=torch.float64) for v in (z, y, r))
    sym = (F.softplus(zt) + F.softplus(-zt)) / 2
    torch.testing.assert_close(L.gls(zt, yt, rt), (1 - rt) * L.bce(zt, yt) + rt * sym)
    assert torch.isfinite(L.gls(zt.to(torch.bfloat16), yt, rt)).all()
