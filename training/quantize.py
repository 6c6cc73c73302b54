"""int8 versions of exported float graphs: onnxruntime static quantization in QDQ form, for CPU serving.

Weights are int8 per output channel with the 7-bit range (`reduce_range`), so the u8 x s8 products cannot
saturate on CPUs without VNNI; activations are uint8 with ranges measured (MinMax) on calibration feeds drawn
from training material only. The caller says which op types are quantized and which nodes stay float.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path


def quantize_graph(src: Path, dst: Path, feeds: list[dict], op_types: list[str],
                   keep_float: Callable | None = None, moving_average: bool = False) -> None:
    """Write the int8 (QDQ) version of the float graph `src` to `dst`. `keep_float(model)` names the nodes of
    the pre-processed graph (constants folded, BatchNorm fused into the convolutions) that must stay float."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)  # (symbolic sizes: onnx shape inference)
        exclude = keep_float(onnx.load(str(pre))) if keep_float else []
        quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=op_types, nodes_to_exclude=exclude,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"CalibMovingAverage": True} if moving_average else {})
