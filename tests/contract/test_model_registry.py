"""The ModelRegistry contract: every implementation passes the same assertions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from domain.ports import EpisodeResult, ModelNotFound, ModelRegistry, PruneResult

HYPERPARAMETERS = {
    "learning_rate": 0.0003,
    "n_steps": 2048,
    "policy_kwargs": {"net_arch": [64, 64], "activation": "tanh"},
    "use_sde": False,
    "target_kl": None,
}


async def register(registry, name="ppo-book", *, status="training", created_ms=1_000, **overrides):
    return await registry.register(
        name,
        algorithm=overrides.get("algorithm", "PPO"),
        path=overrides.get("path", f"models/{name}/{created_ms}.zip"),
        created_ms=created_ms,
        hyperparameters=overrides.get("hyperparameters", HYPERPARAMETERS),
        status=status,
    )


async def test_the_adapter_satisfies_the_port(storage):
    assert isinstance(await storage.open_registry(), ModelRegistry)


async def test_register_numbers_versions_per_name_and_round_trips_fields(storage):
    registry = await storage.open_registry()

    first = await register(registry, created_ms=1_000)
    other = await register(registry, "dqn-book", algorithm="DQN", created_ms=1_500, hyperparameters={})
    second = await register(registry, created_ms=2_000, path="models/elsewhere.zip")

    assert (first.name, first.version, other.version, second.version) == ("ppo-book", 1, 1, 2)
    assert (first.algorithm, first.status, first.path, first.created_ms) == (
        "PPO", "training", "models/ppo-book/1000.zip", 1_000
    )
    assert first.hyperparameters == HYPERPARAMETERS and first.metrics == {}
    assert second.path == "models/elsewhere.zip"
    assert await registry.get(first.model_id) == first
    assert await registry.get(other.model_id) == other
    assert len({first.model_id, other.model_id, second.model_id}) == 3


async def test_versions_continue_in_a_new_registry_instance(storage):
    await register(await storage.open_registry())
    await register(await storage.open_registry())

    reopened = await storage.open_registry()
    assert [model.version for model in await reopened.list_models("ppo-book")] == [1, 2]


async def test_concurrent_registrations_of_one_name_get_distinct_versions(storage):
    registries = [await storage.open_registry(), await storage.open_registry()]

    models = await asyncio.gather(*(register(registries[i % 2], created_ms=i) for i in range(6)))

    assert sorted(model.version for model in models) == [1, 2, 3, 4, 5, 6]


async def test_an_unknown_status_is_refused_and_nothing_is_registered(storage):
    registry = await storage.open_registry()

    with pytest.raises(ValueError, match="status must be one of training, trained, active, retired, failed; got 'deployed'"):
        await register(registry, status="deployed")
    assert await registry.list_models() == []


async def test_created_ms_must_be_integer_milliseconds(storage):
    registry = await storage.open_registry()

    with pytest.raises(ValueError, match="created_ms must be an int"):
        await register(registry, created_ms=1.5)
    assert await registry.list_models() == []


async def test_hyperparameters_that_are_not_json_are_refused(storage):
    registry = await storage.open_registry()

    with pytest.raises(ValueError, match="hyperparameters cannot be stored as JSON"):
        await register(registry, hyperparameters={"schedule": object()})
    assert await registry.list_models() == []


async def test_promote_makes_one_version_active_and_retires_the_previous(storage):
    registry = await storage.open_registry()
    v1, v2, v3 = [await register(registry, created_ms=ms) for ms in (1, 2, 3)]
    unrelated = await register(registry, "dqn-book", status="active")

    assert (await registry.promote(v1.model_id)).status == "active"
    promoted = await registry.promote(v2.model_id)

    assert promoted.status == "active" and promoted.version == 2
    assert await registry.active("ppo-book") == promoted
    statuses = {model.version: model.status for model in await registry.list_models("ppo-book")}
    assert statuses == {1: "retired", 2: "active", 3: "training"}
    assert (await registry.get(unrelated.model_id)).status == "active"
    assert (await registry.get(v3.model_id)) == v3


async def test_promoting_the_active_version_again_changes_nothing(storage):
    registry = await storage.open_registry()
    model = await registry.promote((await register(registry)).model_id)

    assert await registry.promote(model.model_id) == model


async def test_concurrent_promotions_leave_exactly_one_active_version(storage):
    registries = [await storage.open_registry(), await storage.open_registry()]
    models = [await register(registries[0], created_ms=ms) for ms in range(6)]

    await asyncio.gather(*(registries[i % 2].promote(model.model_id) for i, model in enumerate(models)))

    statuses = [model.status for model in await registries[0].list_models("ppo-book")]
    assert statuses.count("active") == 1 and statuses.count("retired") == 5


async def test_registering_an_active_version_retires_the_previous(storage):
    registry = await storage.open_registry()
    old = await register(registry, status="active")

    new = await register(registry, status="active")

    assert (await registry.get(old.model_id)).status == "retired"
    assert await registry.active("ppo-book") == new


async def test_a_failed_model_cannot_be_promoted(storage):
    registry = await storage.open_registry()
    active = await register(registry, status="active")
    failed = await register(registry, status="failed")

    with pytest.raises(ValueError, match="failed; refusing to make it active"):
        await registry.promote(failed.model_id)
    assert await registry.active("ppo-book") == active


async def test_a_finished_run_is_trained_and_still_promotable(storage):
    registry = await storage.open_registry()
    running, finished = await register(registry, created_ms=1), await register(registry, created_ms=2)

    assert (await registry.update(finished.model_id, status="trained", metrics={"training": {}})).status == "trained"
    assert [m.status for m in await registry.list_models("ppo-book")] == ["training", "trained"]
    assert (await registry.promote(finished.model_id)).status == "active"
    assert (await registry.get(running.model_id)).status == "training"


async def test_update_sets_status_and_metrics(storage):
    registry = await storage.open_registry()
    model = await register(registry)
    metrics = {"mean_reward": np.float64(1.25), "episodes": np.int64(40), "sharpe": -0.5, "curve": [1, 2.5]}

    updated = await registry.update(model.model_id, status="retired", metrics=metrics)

    assert updated.status == "retired"
    assert updated.metrics == {"mean_reward": 1.25, "episodes": 40, "sharpe": -0.5, "curve": [1, 2.5]}
    assert await registry.get(model.model_id) == updated
    # Each argument left out is left alone.
    assert (await registry.update(model.model_id, status="failed")).metrics == updated.metrics
    assert (await registry.update(model.model_id, metrics={"x": 1})).status == "failed"
    assert (await registry.update(model.model_id)).metrics == {"x": 1}


async def test_update_to_active_is_a_promotion(storage):
    registry = await storage.open_registry()
    old = await register(registry, status="active")
    new = await register(registry)

    await registry.update(new.model_id, status="active")

    assert (await registry.active("ppo-book")).model_id == new.model_id
    assert (await registry.get(old.model_id)).status == "retired"


async def test_update_refuses_an_unknown_status(storage):
    registry = await storage.open_registry()
    model = await register(registry)

    with pytest.raises(ValueError, match="got 'done'"):
        await registry.update(model.model_id, status="done", metrics={"x": 1})
    assert await registry.get(model.model_id) == model


async def test_unknown_ids_raise_model_not_found(storage):
    registry = await storage.open_registry()

    with pytest.raises(ModelNotFound, match="no model with id 77"):
        await registry.get(77)
    with pytest.raises(ModelNotFound):
        await registry.update(77, status="retired")
    with pytest.raises(ModelNotFound):
        await registry.promote(77)


async def test_active_is_none_without_an_active_version(storage):
    registry = await storage.open_registry()
    await register(registry)

    assert await registry.active("ppo-book") is None
    assert await registry.active("never-registered") is None


async def test_list_models_orders_by_name_then_version_and_filters_by_name(storage):
    registry = await storage.open_registry()
    for name in ("zeta", "alpha", "zeta", "alpha", "alpha"):
        await register(registry, name)

    listed = [(model.name, model.version) for model in await registry.list_models()]

    assert listed == [("alpha", 1), ("alpha", 2), ("alpha", 3), ("zeta", 1), ("zeta", 2)]
    assert [model.version for model in await registry.list_models("zeta")] == [1, 2]
    assert await registry.list_models("nobody") == []


# ---------------------------------------------------------------------------------------------
# The change signal: active_generation
# ---------------------------------------------------------------------------------------------
async def test_the_active_generation_moves_exactly_when_the_active_version_changes(storage):
    registry = await storage.open_registry()
    assert await registry.active_generation("ppo-book") == 0  # never registered

    v1, v2 = await register(registry, created_ms=1), await register(registry, created_ms=2)
    assert await registry.active_generation("ppo-book") == 0  # nothing active yet

    await registry.promote(v1.model_id)
    assert await registry.active_generation("ppo-book") == 1
    await registry.promote(v1.model_id)  # already active: no change
    await registry.update(v1.model_id, metrics={"x": 1})
    await registry.update(v2.model_id, status="failed")
    assert await registry.active_generation("ppo-book") == 1

    await registry.promote((await register(registry, created_ms=3)).model_id)
    assert await registry.active_generation("ppo-book") == 2
    await register(registry, status="active", created_ms=4)
    assert await registry.active_generation("ppo-book") == 3
    await registry.update((await registry.active("ppo-book")).model_id, status="retired")  # none active now
    assert await registry.active_generation("ppo-book") == 4

    with pytest.raises(ValueError, match="refusing"):
        await registry.promote(v2.model_id)  # a failed version: refused, nothing moves
    assert await registry.active_generation("ppo-book") == 4
    # Per name, and the same from any instance over the same store.
    await register(registry, "other", status="active")
    assert await (await storage.open_registry()).active_generation("ppo-book") == 4
    assert await registry.active_generation("other") == 1


async def test_concurrent_promotions_each_move_the_generation_once(storage):
    registries = [await storage.open_registry(), await storage.open_registry()]
    models = [await register(registries[0], created_ms=ms) for ms in range(6)]

    await asyncio.gather(*(registries[i % 2].promote(model.model_id) for i, model in enumerate(models)))

    assert await registries[1].active_generation("ppo-book") == 6


# ---------------------------------------------------------------------------------------------
# Retention: prune
# ---------------------------------------------------------------------------------------------
async def registered_with_files(registry, tmp_path, name, status, created_ms):
    path = tmp_path / f"{name}-{created_ms}.zip"
    path.write_bytes(b"weights")
    record = await register(registry, name, status=status, created_ms=created_ms, path=str(path))
    checkpoints = tmp_path / f"{name}-{created_ms}.checkpoints"
    checkpoints.mkdir()
    (checkpoints / "step_1000.zip").write_bytes(b"checkpoint")
    assert record.checkpoint_dir == str(checkpoints)
    chart = tmp_path / f"{name}-{created_ms}-training.png"
    chart.write_bytes(b"png")
    assert record.training_chart == str(chart)
    return record


async def test_prune_keeps_the_newest_trained_retired_or_failed_versions_of_each_name_and_deletes_the_rest(
    storage, tmp_path
):
    registry = await storage.open_registry()
    statuses = ["retired", "trained", "training", "failed", "retired", "active", "trained"]  # versions 1..7
    book = [await registered_with_files(registry, tmp_path, "book", s, ms) for ms, s in enumerate(statuses)]
    other = [await registered_with_files(registry, tmp_path, "other", "retired", 100 + ms) for ms in range(2)]
    generation = await registry.active_generation("book")

    deleted = (await registry.prune(keep=2)).deleted

    # book: the prunable versions are 1, 2, 4, 5, 7; the newest two (7 and 5) stay.
    assert [(m.name, m.version) for m in deleted] == [("book", 1), ("book", 2), ("book", 4)]
    assert [m.version for m in await registry.list_models("book")] == [3, 5, 6, 7]
    assert [m.version for m in await registry.list_models("other")] == [1, 2]
    for record in book:
        gone = record.version in (1, 2, 4)
        assert Path(record.path).exists() is not gone
        assert Path(record.checkpoint_dir).exists() is not gone
        assert Path(record.training_chart).exists() is not gone
    assert all(Path(record.path).exists() for record in other)
    with pytest.raises(ModelNotFound):
        await registry.get(book[0].model_id)
    assert await registry.active_generation("book") == generation  # nothing active was touched


async def test_prune_one_name_to_zero_keeps_its_active_and_training_versions_and_never_reuses_versions(
    storage, tmp_path
):
    registry = await storage.open_registry()
    for ms, status in enumerate(["active", "training", "retired", "failed", "trained"]):
        await registered_with_files(registry, tmp_path, "book", status, ms)
    await registered_with_files(registry, tmp_path, "other", "retired", 10)

    deleted = (await registry.prune(keep=0, name="book")).deleted

    assert [(m.name, m.version) for m in deleted] == [("book", 3), ("book", 4), ("book", 5)]
    assert [(m.version, m.status) for m in await registry.list_models("book")] == [(1, "active"), (2, "training")]
    assert len(await registry.list_models("other")) == 1
    # The numbers of pruned versions are never handed out again.
    assert (await register(registry, "book", created_ms=20)).version == 6
    assert await registry.prune(keep=0, name="book") == PruneResult()


async def test_prune_tolerates_files_already_gone_and_refuses_a_negative_keep(storage, tmp_path):
    registry = await storage.open_registry()
    await register(registry, status="retired", path=str(tmp_path / "never-written.zip"))

    with pytest.raises(ValueError, match="keep must be a whole number of versions >= 0, got -1"):
        await registry.prune(keep=-1)
    assert len(await registry.list_models()) == 1
    assert len((await registry.prune(keep=0)).deleted) == 1
    assert await registry.list_models() == []


async def test_prune_never_deletes_a_version_that_paper_traded_and_deletes_the_records_of_those_it_deletes(
    storage, tmp_path
):
    registry, records = await storage.open_registry(), await storage.open_trading_records()
    # versions 1..4: 1 paper-traded, 2 evaluated, 3 paper-traded and evaluated, 4 the newest
    book = [await registered_with_files(registry, tmp_path, "book", "retired", ms) for ms in range(4)]
    for record, modes in zip(book, (["paper"], ["evaluation", "training"], ["evaluation", "paper"], ["paper"])):
        for mode in modes:
            episode = await records.start_episode(record.model_id, market_ticker="T", mode=mode, started_ms=0)
            await records.finish_episode(episode.episode_id, EpisodeResult(ended_ms=1, step_count=1, trade_count=0,
                                                                           total_pnl=0, fees_paid=0))  # fmt: skip

    result = await registry.prune(keep=1)

    assert [m.version for m in result.deleted] == [2]  # 4 is the newest: kept as asked
    assert [(m.version, m.status) for m in result.paper_traded] == [(1, "retired"), (3, "retired")]
    assert [m.version for m in await registry.list_models("book")] == [1, 3, 4]
    assert not Path(book[1].path).exists() and all(Path(book[i].path).exists() for i in (0, 2, 3))
    assert await records.list_episodes(book[1].model_id) == []  # its evaluation and training records went with it
    assert [e.mode for e in await records.list_episodes(book[2].model_id)] == ["evaluation", "paper"]
    # Asked again: nothing more to delete, the same two kept.
    again = await registry.prune(keep=1)
    assert again.deleted == () and [m.version for m in again.paper_traded] == [1, 3]


# ---------------------------------------------------------------------------------------------
# Schema version 5: finished runs are "trained"
# ---------------------------------------------------------------------------------------------
async def test_the_migration_marks_finished_runs_left_training_by_older_code_as_trained(storage, monkeypatch):
    from adapters.storage.migrations import runner

    pending = runner.pending_migrations
    monkeypatch.setattr(runner, "pending_migrations", lambda backend, applied: pending(backend, applied)[:4])
    old = await storage.open_registry()  # schema version 4: no "trained" yet
    finished, running, retired = [await register(old, created_ms=ms) for ms in (1, 2, 3)]
    await old.update(finished.model_id, metrics={"training": {"timesteps": 64}})  # the run ended
    await old.update(retired.model_id, status="retired", metrics={"training": {"timesteps": 64}})
    await old.close()
    monkeypatch.setattr(runner, "pending_migrations", pending)

    registry = await storage.open_registry()  # applies version 5

    assert [m.status for m in await registry.list_models("ppo-book")] == ["trained", "training", "retired"]
    assert (await registry.update(running.model_id, status="trained")).status == "trained"
    assert [m.version for m in (await registry.prune(keep=2)).deleted] == [1]  # 2 and 3 are the newest two
