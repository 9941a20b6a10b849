"""`vla-ros eval --backend`: the backend flag reaches the policy loader."""
import pytest

from vla_ros.cli import main
from vla_ros.config import Config
from vla_ros.replay.pattern_bag import PatternBagSpec, write_pattern_bag


def test_unavailable_backend_stops_before_any_work(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here: this test checks the refusal without it")
    except ImportError:
        pass
    bag = tmp_path / "bag"
    write_pattern_bag(bag, Config(), PatternBagSpec(duration_s=1.0, height=64, width=96))
    out = tmp_path / "out"
    assert main(["eval", "--bag", str(bag), "--model", "random:tiny", "--backend", "tensorrt", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "tensorrt" in err and "random:tiny" in err
    assert not out.exists()
