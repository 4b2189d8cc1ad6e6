"""qwire.ray: one call registers qwire for chosen types on the driver and in every worker of a
local Ray (num_cpus=2); values of those types cross with qwire, arrays out of band in the
object store."""
import dataclasses
import os

import numpy as np
import pandas as pd

# pandas 3's default str is Arrow-backed; on pandas 2 the same storage is asked for by name
ARROW_STR = "str" if int(pd.__version__.split(".")[0]) >= 3 else "string[pyarrow]"
import pytest

ray = pytest.importorskip("ray")  # in the test extra: present in CI

import qwire  # noqa: E402
import qwire.ray as qray  # noqa: E402


@qwire.register
@dataclasses.dataclass
class Reading:
    sensor: str
    values: np.ndarray


def worker_pythonpath():
    """PYTHONPATH for Ray's workers: this directory (they import this module by name, for the
    remote functions and for Reading), then the driver's own PYTHONPATH made absolute (src/ when
    qwire is run in place; nothing when it is installed, as in CI). Workers start elsewhere, so
    relative entries would not resolve there."""
    here = os.path.dirname(os.path.abspath(__file__))
    inherited = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join([here, *inherited])


@pytest.fixture(scope="module")
def ray_session():
    qray.init([pd.DataFrame, Reading, qwire.Table], num_cpus=2, include_dashboard=False,
              log_to_driver=False, configure_logging=False,
              runtime_env={"env_vars": {"PYTHONPATH": worker_pythonpath()}})
    yield
    ray.shutdown()


def frame(n):
    return pd.DataFrame({"x": np.arange(n), "f": np.arange(n) * 0.5, "s": pd.array(["a", None] * (n // 2), dtype=ARROW_STR)})


@ray.remote
def facts(df):
    return {"rows": len(df), "f": float(df["f"].sum()), "missing": int(df["s"].isna().sum()),
            "writeable": bool(df["x"].to_numpy().flags.writeable), "stats": qray.stats()}


@ray.remote
def make_frame(n):
    return frame(n)


@ray.remote
def reading_sum(r):
    return [r.sensor, float(r.values.sum()), qray.stats()["deserialized"]]


def test_dataframe_to_a_worker_and_back(ray_session):
    """A DataFrame put by the driver is decoded by qwire in the worker; one made in a worker is
    decoded by qwire in the driver, equal, its columns read-only views of the object store."""
    df = frame(200_000)
    ref = ray.put(df)
    got = ray.get(facts.remote(ref), timeout=120)
    assert got["rows"] == 200_000 and got["missing"] == 100_000 and got["f"] == float(df["f"].sum())
    assert got["stats"]["deserialized"] >= 1
    before = qray.stats()["deserialized"]
    back = ray.get(make_frame.remote(200_000), timeout=120)
    pd.testing.assert_frame_equal(back, df)
    assert qray.stats()["deserialized"] == before + 1
    if ARROW_STR == "str":  # pandas 2 has no public way to build blocks over the views: it copies
        assert not back["x"].to_numpy().flags.writeable


def test_registered_class_in_a_worker(ray_session):
    """A qwire-registered dataclass crosses with qwire (its array out of band)."""
    r = Reading("t1", np.arange(100_000, dtype=np.float64))
    sensor, total, decoded = ray.get(reading_sum.remote(r), timeout=120)
    assert sensor == "t1" and total == float(r.values.sum()) and decoded >= 1


def test_runtime_env_refuses_a_second_hook():
    with pytest.raises(ValueError):
        qray.runtime_env([pd.DataFrame], {"worker_process_setup_hook": print})
