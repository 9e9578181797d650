import pytest


@pytest.fixture(scope="session")
def model_cache_dir(tmp_path_factory):
    """One cache dir for the whole run, so the real Gemma is converted to safetensors at most once."""
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture(autouse=True)
def _isolated_dirs(monkeypatch, tmp_path, model_cache_dir):
    """Point every cache and index dir away from the user's own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(model_cache_dir))
    monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path / "default-index"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
