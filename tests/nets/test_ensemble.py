"""The ensemble network: averaged probabilities (or values), built from a spec like any other net."""

from __future__ import annotations

import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.nets import build_net, ensemble_spec, net_kind
from pipeline.nets.ensemble import Ensemble

MEMBER = {"kind": "fnn", "in_features": 4, "out_features": 3, "hidden": [8], "activation": "relu", "dropout": 0.0,
          "bias": True, "norm": "none", "init": "default"}


def test_classification_softmax_is_the_mean_of_the_members_probabilities() -> None:
    torch.manual_seed(0)
    net = build_net(ensemble_spec(MEMBER, 3, "classification")).eval()
    x = torch.randn(5, 4)
    expected = torch.stack([torch.softmax(m(x), dim=1) for m in net.members]).mean(dim=0)
    got = torch.softmax(net(x), dim=1)
    assert torch.allclose(got, expected, atol=1e-6)
    # and not the softmax of the mean logits, which is a different (and here distinguishable) average
    averaged_logits = torch.softmax(torch.stack([m(x) for m in net.members]).mean(dim=0), dim=1)
    assert not torch.allclose(got, averaged_logits, atol=1e-4)


def test_regression_averages_the_values() -> None:
    torch.manual_seed(1)
    member = {**MEMBER, "out_features": 1}
    net = build_net(ensemble_spec(member, 2, "regression")).eval()
    x = torch.randn(6, 4)
    assert torch.allclose(net(x), (net.members[0](x) + net.members[1](x)) / 2, atol=1e-6)
    assert net(x).shape == (6, 1)


def test_members_are_the_trained_networks_when_weights_load() -> None:
    torch.manual_seed(2)
    singles = [build_net(MEMBER) for _ in range(2)]
    state = {f"members.{i}.{k}": v for i, net in enumerate(singles) for k, v in net.state_dict().items()}
    net = build_net(ensemble_spec(MEMBER, 2, "classification"))
    net.load_state_dict(state)
    x = torch.randn(3, 4)
    for single, member in zip(singles, net.members, strict=True):
        assert torch.equal(single(x), member(x))


@pytest.mark.parametrize(("spec", "said"), [
    ({"kind": "ensemble", "size": 0, "task": "classification", "member": MEMBER}, "size 0"),
    ({"kind": "ensemble", "size": 2, "task": "ranking", "member": MEMBER}, "task 'ranking'"),
    ({"kind": "ensemble", "size": 2, "task": "regression"}, "member kind None"),
    ({"kind": "ensemble", "size": 2, "task": "regression", "member": {"kind": "ensemble"}}, "member kind 'ensemble'"),
])
def test_bad_ensemble_specs_are_refused_by_name(spec: dict, said: str) -> None:
    with pytest.raises(PipelineError, match="net spec for 'ensemble'") as caught:
        build_net(spec)
    assert said in str(caught.value)


def test_an_empty_ensemble_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="at least one member"):
        Ensemble([], "classification")


def test_net_kind_is_the_spec_kind_or_an_ensembles_member_kind() -> None:
    assert net_kind({**MEMBER, "kind": "rnn"}) == "rnn"
    assert net_kind(ensemble_spec(MEMBER, 2, "classification")) == "fnn"  # the bundle's fixed-length test
