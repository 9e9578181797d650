"""`rag index --engine ray --ray-address ADDR`: a cluster of two nodes joined by its address, and one that cannot be.

Ray's own test cluster (``ray.cluster_utils.Cluster``) starts two raylets on this machine, each with its own object
store, as `ray start --head` and `ray start --address` would on two machines. Its own module, because the engine
must be the one to join the cluster (``test_ray_engine.py`` keeps a local instance up for its tests).
"""

import os
from pathlib import Path

import pytest
from test_ray_engine import SMALL, RecordsEachEmbedder, assert_same_index, let_workers_import_tests, torch_threads

from fakes import HashEmbedder, write
from ingest.sync import index_folder

ray = pytest.importorskip("ray")  # the dev extra installs it


def gpus_given() -> str:
    """The GPUs Ray gave this process, and where it pointed CUDA."""
    return f"{','.join(str(gpu) for gpu in ray.get_gpu_ids())} {os.environ.get('CUDA_VISIBLE_DEVICES')}"


@pytest.fixture
def worker_env(monkeypatch):
    assert not ray.is_initialized()  # the engine under test must start or join Ray itself
    let_workers_import_tests(monkeypatch)


@pytest.fixture
def two_nodes(worker_env):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_on_two_nodes_joined_by_address_the_index_is_a_local_runs_and_an_embedder_takes_its_nodes_cores(
    two_nodes, tmp_path
):
    from ingest.ray_engine import RayEngine

    docs = tmp_path / "docs"
    for i in range(12):
        write(docs, f"log-{i:02}.md", f"# Log {i}\n\n" + " ".join(f"Gauge {i}.{j} read {j * 3} cm." for j in range(30)))
    write(docs, ".rag-acl.toml", 'default = "allow"\n[[rules]]\npath = "log-0*"\nallow = ["user:carol"]\n')
    record = tmp_path / "actors"
    record.mkdir()
    engine = RayEngine(RecordsEachEmbedder(record, torch_threads), address=two_nodes.address)

    local = index_folder(docs, tmp_path / "local", HashEmbedder(), progress=False, **SMALL)
    remote = index_folder(docs, tmp_path / "ray", HashEmbedder(), progress=False, **SMALL, engine=engine)
    assert len([node for node in ray.nodes() if node["Alive"]]) == 2  # the engine joined the two-node cluster
    assert remote.chunks > 100 and (remote.added, remote.chunks) == (local.added, local.chunks)
    assert_same_index(tmp_path / "local", tmp_path / "ray")
    # An embedder actor runs on its node's one core, not on the cluster's two (one node: both, test_ray_engine.py)
    assert {f.read_text() for f in record.iterdir()} == {"1"}


def test_on_a_cluster_with_a_gpu_the_embedder_actor_is_given_it(worker_env, tmp_path):
    from ingest.ray_engine import RayEngine

    docs = tmp_path / "docs"
    write(docs, "a.md", "# A\n\n" + " ".join(f"Gauge {j} read {j * 3} cm." for j in range(30)))
    record = tmp_path / "actors"
    record.mkdir()
    # A logical GPU: Ray schedules by it as by a real one (there is no device behind it, so nothing runs on it)
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        index_folder(
            docs,
            tmp_path / "ray",
            HashEmbedder(),
            progress=False,
            **SMALL,
            engine=RayEngine(RecordsEachEmbedder(record, gpus_given)),
        )
    finally:
        ray.shutdown()
    # One actor for the one GPU, holding it: Ray points CUDA at it
    assert [f.read_text() for f in record.iterdir()] == ["0 0"]


def test_a_cluster_that_cannot_be_joined_is_named_with_what_to_do():
    import socket

    from ingest.common import UsageError
    from ingest.errors import EngineError
    from ingest.ray_engine import RayEngine, cannot_connect

    with socket.socket() as probe:  # a port where nothing listens: fails at once, not after Ray's 20 minutes
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(EngineError, match=rf"Ray cluster at {closed} \(Connection refused\): is it running"):
        list(RayEngine(HashEmbedder, address=closed).parse(Path("."), ["a.md"], SMALL, show=False))
    with pytest.raises(UsageError, match=r"ray://10\.0\.0\.5:10001: Ray Data does not run over Ray Client"):
        list(RayEngine(HashEmbedder, address="ray://10.0.0.5:10001").parse(Path("."), ["a.md"], SMALL, show=False))
    assert not ray.is_initialized()
    token = cannot_connect("10.0.0.5:6379", "RPC error: InvalidAuthToken: Authentication token is missing")
    assert "10.0.0.5:6379" in token and "RAY_AUTH_MODE=token" in token
