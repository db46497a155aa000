"""`mixc kernels`: the specialisations a spec needs, each once, with readable emitted source."""

import ast
import dataclasses
import re

import composer
from composer.cli import main
from composer.codegen.kernel_plan import kernel_plan
from composer.kernels.plan import DEFAULT_GPU, Target
from composer.resolve import resolve
from composer.kernels.semiseparable.plan import ScanSizes, plan_scan, scan_calls
from composer.kernels.semiseparable.tuning import SSDTuning

from .conftest import small_spec_data

SSD = {"kind": "semiseparable", "state": 16, "head_dim": 16, "chunk": 16}


def gpu(precision: str = "fp32", mode: str = "train") -> Target:
    return dataclasses.replace(DEFAULT_GPU, precision=precision, mode=mode)


ATTENTION = "attention_decode.py.jinja"


def plan_of(blocks: dict, layers: list, precision: str = "fp32", norms: bool = False):
    """The plan's specialisations on a 132-multiprocessor GPU (the SSD ones only unless `norms`) and its blocks
    whose mixer runs plain PyTorch."""
    specialisations, off_kernels = kernel_plan(
        resolve(composer.validate(small_spec_data(blocks=blocks, layers=layers))), gpu(precision))
    return [s for s in specialisations if s.template.startswith("ssd_") or norms and s.template != ATTENTION],\
        list(off_kernels)


def test_identical_blocks_share_one_specialisation_per_template():
    specialisations, on_reference = plan_of(
        {"a": {"mixer": SSD}, "b": {"mixer": SSD, "channel": "swiglu"},
         "attn": {"mixer": {"kind": "attention", "heads": 4}}},
        ["a", "b", "attn", "a"])
    assert sorted(s.template for s in specialisations) == ["ssd_backward.py.jinja", "ssd_forward.py.jinja"]
    assert all(s.blocks == ("a", "b") for s in specialisations)
    assert on_reference == []  # attention's decoding step is generated too (its prefill runs torch's SDPA)
    everything, _ = kernel_plan(resolve(composer.validate(small_spec_data(
        blocks={"attn": {"mixer": {"kind": "attention", "heads": 4}}}, layers=["attn"]))), gpu())
    assert [(s.template, s.blocks) for s in everything] == [(ATTENTION, ("attn",))]


def test_a_different_state_size_is_a_different_specialisation():
    specialisations, _ = plan_of({"a": {"mixer": SSD}, "b": {"mixer": {**SSD, "state": 32}}}, ["a", "b"])
    assert len(specialisations) == 4
    assert {dict(s.constants)["N"] for s in specialisations} == {16, 32}


def test_decay_none_renders_without_decay_code():
    specialisations, _ = plan_of({"a": {"mixer": {**SSD, "decay": "none"}}}, ["a"])
    for item in specialisations:
        source = item.source("small")
        assert dict(item.constants)["DECAY"] == "none"
        assert "log_a_ptr" not in source and "tl.exp" not in source


def test_precision_picks_the_operand_type_and_data_decay_takes_dt():
    mixer = {**SSD, "state": 32, "head_dim": 32, "chunk": 32}
    fp32, _ = plan_of({"a": {"mixer": mixer}}, ["a"])
    bf16, _ = plan_of({"a": {"mixer": mixer}}, ["a"], precision="bf16")
    small_bf16, _ = plan_of({"a": {"mixer": SSD}}, ["a"], precision="bf16")  # sizes of 16 multiply as fp32
    assert {dict(s.constants)["OPERAND"] for s in fp32} == {"fp32"}
    assert {dict(s.constants)["OPERAND"] for s in bf16} == {"bf16"}
    assert {dict(s.constants)["OPERAND"] for s in small_bf16} == {"fp32"}
    assert all(dict(s.constants)["HAS_DT"] and dict(s.constants)["HAS_D"] for s in fp32 + bf16)  # dt and skip fused
    no_skip, _ = plan_of({"a": {"mixer": {**SSD, "skip": False}}}, ["a"])
    assert not any(dict(s.constants)["HAS_D"] for s in no_skip)
    fixed, _ = plan_of({"a": {"mixer": {**SSD, "decay": "fixed"}}}, ["a"])
    assert not any(dict(s.constants)["HAS_DT"] for s in fixed)


def test_sizes_with_a_fused_forward_list_both_forward_forms_under_distinct_names():
    """At Mamba-2's (P, N) in bf16 the walk may split each sequence into segments, which fill the GPU at any
    batch: the fused forward runs from one sequence up (one form, no batch rule), the backward once; a walk
    held to one segment takes the split form below a quarter of the multiprocessors, both listed."""
    mamba2 = {**SSD, "state": 128, "head_dim": 64, "chunk": 256}
    specialisations, _ = plan_of({"a": {"mixer": mamba2}}, ["a"], precision="bf16")
    forwards = [s for s in specialisations if s.template == "ssd_forward.py.jinja"]
    assert [dict(s.constants)["FUSED"] for s in forwards] == [True]
    assert len(specialisations) == 2 and len({s.file_name for s in specialisations}) == 2
    assert "def chunk_scan_fused_fwd" in forwards[0].source("small") and forwards[0].runs == ""
    sizes = ScanSizes(64, 128, 256, 32, 1, decays=True)
    whole = plan_scan(sizes, 132, SSDTuning(block_p=64, block_q=64, fused=None, segments=1))
    calls = [call for call in scan_calls(whole, "bf16", True) if call.template == "ssd_forward.py.jinja"]
    assert sorted(dict(call.constants)["FUSED"] for call in calls) == [False, True]
    assert [call.when for call in calls if dict(call.constants)["FUSED"]] == [
        "b*H fused programs >= 132 multiprocessors / 4"]  # one 64-column tile a head
    fp32, _ = plan_of({"a": {"mixer": mamba2}}, ["a"])
    assert all(s.runs == "" for s in fp32)  # one form, always
    assert [dict(s.constants)["FUSED"] for s in fp32 if s.template == "ssd_forward.py.jinja"] == [False]


def test_sizes_split_when_the_batch_is_large_list_those_tiles_too():
    """At (P, N) = (128, 128) in bf16 a large b * H takes split tiles with the state in pieces: two
    forwards (fused, in segments where the batch is small; split in pieces) and a backward for each, the fused
    walk's forming the scores it did not save (FORMS_SCORES)."""
    wide = {**SSD, "state": 128, "head_dim": 128, "chunk": 256}
    specialisations, _ = plan_of({"a": {"mixer": wide}}, ["a"], precision="bf16")
    forwards = [dict(s.constants) for s in specialisations if s.template == "ssd_forward.py.jinja"]
    assert len(forwards) == 2 and len(specialisations) == 4
    assert len({s.file_name for s in specialisations}) == 4  # --emit writes each to its own file
    runs = {(dict(s.constants)["FUSED"], dict(s.constants)["OUTPUT_BLOCK_N"] if "OUTPUT_BLOCK_N" in dict(s.constants)
             else None): s.runs for s in specialisations if s.template == "ssd_forward.py.jinja"}
    assert runs[True, None] == ("b*H state-passing programs < 132 multiprocessors and "
                                "b*H*2 fused programs in segments >= 132 multiprocessors / 4")
    assert runs[False, 64] == "b*H state-passing programs >= 132 multiprocessors"
    backwards = [s for s in specialisations if s.template == "ssd_backward.py.jinja"]
    assert [s.runs for s in backwards] == ["", ""]  # each with its forward
    assert sorted(dict(s.constants).get("FORMS_SCORES", False) for s in backwards) == [False, True]
    header = next(s for s in specialisations if s.runs == runs[True, None]).source("wide").split("# triton:")[0]
    assert all(len(line) <= 120 and line.startswith("#") for line in header.splitlines())  # long runs wrap
    assert " ".join(line.lstrip("# ") for line in header.splitlines()[3:]) == f"runs: {runs[True, None]}"
    pieces = next(s for s in specialisations if s.runs == runs[False, 64])
    assert "# runs: b*H state-passing programs >= 132 multiprocessors\n" in pieces.source("wide")
    assert sorted((f["FUSED"], f.get("OUTPUT_BLOCK_N")) for f in forwards) == [(False, 64), (True, None)]


def test_inference_lists_forwards_that_save_nothing_and_no_backward(tmp_path, capsys):
    """Without gradients the forward saves nothing and no backward runs; at (P, N) = (128, 128) in bf16 the
    split tiles for a busy training forward never run, so only the fused walk (in segments where the batch is
    small) remains."""
    wide = {**SSD, "state": 128, "head_dim": 128, "chunk": 256}
    spec = resolve(composer.validate(small_spec_data(blocks={"a": {"mixer": wide}}, layers=["a"])))
    inference = [s for s in kernel_plan(spec, gpu("bf16", "inference"))[0] if s.template != "gated_rmsnorm.py.jinja"]
    assert [s.template for s in inference] == ["ssd_forward.py.jinja"]
    # the fused walk stores no states
    assert [(dict(s.constants)["FUSED"], dict(s.constants)["SAVES_FOR_BACKWARD"], s.runs) for s in inference] == [
        (True, False, "")]
    fused = inference[0].source("wide")
    assert "def chunk_scan_fused_fwd" in fused and "states_ptr" not in fused and "def chunk_scores_fwd" not in fused
    training = kernel_plan(spec, gpu("bf16"))[0]
    assert not {s.file_name for s in inference} & {s.file_name for s in training}  # training's walk saves states
    path = tmp_path / "wide.json"
    path.write_text(spec.model_dump_json())
    assert main(["kernels", str(path), "--precision", "bf16", "--inference"]) == 0
    printed = capsys.readouterr().out
    assert "ssd_forward.py.jinja" in printed and "ssd_backward.py.jinja" not in printed


def test_linear_attention_lists_its_value_and_normaliser_scans():
    lowrank = {"kind": "lowrank", "heads": 2, "head_dim": 32, "feature_dim": 16, "chunk": 64}
    specialisations, on_reference = plan_of({"a": {"mixer": lowrank}}, ["a"])
    assert on_reference == [] and len(specialisations) == 4
    assert {dict(s.constants)["P"] for s in specialisations} == {32, 16}  # values, normaliser
    assert {dict(s.constants)["HEADS_PER_GROUP"] for s in specialisations} == {1}
    assert {dict(s.constants)["DECAY"] for s in specialisations} == {"none"}
    assert not any(dict(s.constants)["HAS_D"] or dict(s.constants)["HAS_DT"] for s in specialisations)
    unnormalised, _ = plan_of({"a": {"mixer": {**lowrank, "normalize": False, "decay": "fixed"}}}, ["a"])
    assert len(unnormalised) == 2 and {dict(s.constants)["DECAY"] for s in unnormalised} == {"data"}
    _, on_reference = plan_of({"a": {"mixer": {**lowrank, "feature_map": "taylor"}}}, ["a"])
    assert on_reference == ["a"]  # 1 + 16 + 256 features
    non_causal, on_reference = plan_of({"a": {"mixer": {**lowrank, "causal": False}}}, ["a"])
    assert non_causal == [] and on_reference == ["a"]  # the whole-sequence state is one product, no scan


def test_specialisations_differing_only_in_a_flag_emit_to_distinct_files():
    specialisations, _ = plan_of({"a": {"mixer": SSD}, "b": {"mixer": {**SSD, "skip": False}}}, ["a", "b"])
    assert len(specialisations) == 4 and len({s.file_name for s in specialisations}) == 4
    assert all(s.file_name.startswith("ssd_") and "_P16_N16_Q16_" in s.file_name for s in specialisations)


def test_sizes_the_kernels_cannot_tile_run_on_the_reference():
    _, on_reference = plan_of({"a": {"mixer": {**SSD, "state": 24}}}, ["a"])
    assert on_reference == ["a"]


def test_emit_writes_python_that_names_spec_and_blocks(tmp_path, capsys):
    path = tmp_path / "s.json"
    path.write_text(composer.validate(small_spec_data(layers=["ssd", "attn"])).model_dump_json())
    assert main(["kernels", str(path), "--emit", str(tmp_path / "out")]) == 0
    files = sorted((tmp_path / "out").glob("*.py"))
    assert [f.name.rsplit("_", 1)[0].split("_P")[0] for f in files] == ["attention_decode", "gated_rmsnorm_W128_gated",
                                                                         "ssd_backward", "ssd_forward"]
    assert all(re.fullmatch(r".+_[0-9a-f]{8}\.py", f.name) for f in files)  # each ends in its constants' digest
    for file in files:
        text = file.read_text()
        ast.parse(text)
        assert text.startswith("# Generated by mixc from template ")
        block = "attn" if file.name.startswith("attention_decode") else "ssd"
        assert f"# spec: small\n# blocks: {block}\n" in text
    assert "block attn" not in capsys.readouterr().out  # its decoding step is generated: no line saying why not


def test_state_space_blocks_list_their_fused_output_norm_once_per_width_and_gate():
    specialisations, _ = plan_of(
        {"a": {"mixer": SSD}, "b": {"mixer": {**SSD, "state": 32}}, "c": {"mixer": {**SSD, "gate": False}},
         "d": {"mixer": {**SSD, "out_norm": False}}, "e": {"mixer": {**SSD, "state": 24}}},
        ["a", "b", "c", "d", "e"], norms=True)
    norms = {(dict(s.constants)["W"], dict(s.constants)["HAS_GATE"]): s.blocks for s in specialisations
             if s.template == "gated_rmsnorm.py.jinja"}
    # the same width and gate share one module; a state size the SSD kernels cannot tile still gets the norm
    assert norms == {(128, True): ("a", "b", "e"), (128, False): ("c",)}
