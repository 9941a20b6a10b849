"""Where the node finds model.path: as given, else in the installed package's share directory."""
from pathlib import Path

from vla_ros.ros.model_path import resolve_model_path


def test_model_path_resolution(tmp_path: Path, monkeypatch) -> None:
    share = tmp_path / "share"
    (share / "models" / "drive-tiny").mkdir(parents=True)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert resolve_model_path("random:tiny", share) == ("random:tiny", "preset")
    assert resolve_model_path("models/drive-tiny", share) == (str(share / "models" / "drive-tiny"), "package share")
    assert resolve_model_path("models/drive-tiny", None) == ("models/drive-tiny", "as given")
    (work / "models" / "drive-tiny").mkdir(parents=True)  # a local copy wins
    assert resolve_model_path("models/drive-tiny", share) == ("models/drive-tiny", "as given")
    assert resolve_model_path("models/missing", share) == ("models/missing", "as given")  # loading names the missing path
    assert resolve_model_path(str(tmp_path / "abs"), share) == (str(tmp_path / "abs"), "as given")
