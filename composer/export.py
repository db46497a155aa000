"""Spec -> a folder that is a standalone Python package and a Hugging Face model repository at once.

    modeling_<name>.py       the generated model source `build` loads, importing the runtime from beside it,
                             then `from_pretrained` (torch alone) and the Hugging Face classes
    configuration_<name>.py  the Hugging Face config class
    kernel_plan.py           every layer's kernel plan, as data (what `build` hands the layers)
    <runtime>.py             the compiler's runtime modules the model imports, copied (codegen/package.py)
    kernels/                 the Triton kernels the plan can run, rendered, and manifest.json naming each
    config.json, model.safetensors, spec.<ext>, README.md

Nothing in it imports the compiler: `import <package>; <package>.from_pretrained(folder)` needs torch (and
triton for the kernels on a GPU); `AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)` needs
transformers too.
"""

from __future__ import annotations

import dataclasses
import json
import pprint
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from composer.build import build, plans_of
from composer.codegen.model_source import render_model_source
from composer.codegen.package import ExportError, data_files, flat_name, vendor
from composer.codegen.render import render_kernel, render_template
from composer.kernels.plan import DEFAULT_GPU, KernelCall, Target
from composer.kinds import kind_of
from composer.layers.weights import load_weights, save
from composer.planner import block_kernels
from composer.resolve import resolve
from composer.schedule import layer_names
from composer.spec import Spec

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
AUTO_CLASSES = {"lm": "AutoModelForCausalLM", "masked-lm": "AutoModelForMaskedLM"}  # by head
HEADS = tuple(AUTO_CLASSES)
WEIGHTS_MODULE = "composer.layers.weights"
_PACKAGE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Exported:
    """What an export wrote: its folder, the package name, the rendered kernels and the weights' origin."""

    folder: Path
    package: str
    kernels: int
    weights: str
    auto_class: str  # the transformers Auto class that loads it


def camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part) or "Model"


def export_target(target: Target | None) -> Target:
    """The target the kernels are planned for: the one given, this process's GPU, else the H200 default."""
    if target is not None:
        return target
    current = Target.current()
    return current if current.on_gpu else DEFAULT_GPU


def constants_key(call: KernelCall) -> str:
    """The key kernel_files.py looks a kernel up by (the same spelling as its `constants_key`)."""
    return call.template + ":" + ",".join(f"{name}={value!r}" for name, value in sorted(call.constants))


def _check_folder(out: Path, force: bool) -> str:
    package = out.name
    if not _PACKAGE.fullmatch(package):
        suggestion = re.sub(r"\W", "_", package)
        suggestion = suggestion if _PACKAGE.fullmatch(suggestion) else f"model_{suggestion}"
        raise ExportError(f"the folder's name {package!r} must be a Python identifier, since the folder is the "
                          f"package (`import {package}` otherwise fails): try {out.with_name(suggestion)}")
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise ExportError(f"{out} is not empty: pass --force to replace what is there")
        shutil.rmtree(out)
    return package


def _plan_source(plans: dict) -> str:
    """kernel_plan.py: the plan entries as Python data, with the classes they are made of imported."""
    classes: dict[str, set[str]] = {}

    def collect(value) -> None:
        if dataclasses.is_dataclass(value):
            classes.setdefault(type(value).__module__, set()).add(type(value).__name__)
            for f in dataclasses.fields(value):
                collect(getattr(value, f.name))
        elif isinstance(value, dict):
            for item in value.values():
                collect(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                collect(item)

    collect(list(plans.values()))
    imports = "\n".join(f"from .{flat_name(module)} import {', '.join(sorted(names))}"
                        for module, names in sorted(classes.items()))
    body = pprint.pformat(plans, width=116, sort_dicts=False)
    return ('"""Every layer\'s kernel plan, by block: the constants of each kernel it may run, decided at export '
            'time."""\n\n' + (imports + "\n\n" if imports else "") + f"PLANS = {body}\n")


def _kernel_calls(plans: dict) -> list[KernelCall]:
    calls: list[KernelCall] = []
    for name, entry in plans.items():
        if not hasattr(entry, "loadable"):
            raise ExportError(f"block `{name}`: its kernel plan ({type(entry).__name__}) cannot list the kernels "
                              "it may load, so they cannot be rendered into the package")
        calls += [call for call in entry.loadable() if call not in calls]
    return calls


def _write_kernels(folder: Path, calls: list[KernelCall], package: str, spec_name: str) -> None:
    folder.mkdir()
    manifest, counts = {}, {}
    for call in calls:
        stem = call.template.split(".", 1)[0]
        counts[stem] = counts.get(stem, -1) + 1
        file_name = f"{stem}_{counts[stem]}.py"
        constants = dict(call.constants)
        header = {"package": package, "spec": spec_name}
        (folder / file_name).write_text(render_kernel(call.template, constants, header))
        manifest[constants_key(call)] = file_name
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def _config(spec: Spec, package: str, head: str, dtype: str) -> dict:
    names = layer_names(spec)
    klass = camel(spec.name)
    head_class = f"{klass}ForCausalLM" if head == "lm" else f"{klass}ForMaskedLM"
    auto = AUTO_CLASSES[head]
    layers = []
    for name in names:
        mixer = spec.blocks[name].mixer
        layers.append(dict(block=name, layer_type=kind_of(mixer, "sequence").layer_type(mixer),
                           mixer=mixer.model_dump(mode="json"), channel=spec.blocks[name].channel.kind))
    return {
        "model_type": spec.name,
        "architectures": [head_class],
        "auto_map": {"AutoConfig": f"configuration_{spec.name}.{klass}Config",
                     "AutoModel": f"modeling_{spec.name}.{head_class}",
                     auto: f"modeling_{spec.name}.{head_class}"},
        "vocab_size": spec.padded_vocab,
        "hidden_size": spec.d_model,
        "num_hidden_layers": len(names),
        "max_position_embeddings": spec.max_len,
        "tie_word_embeddings": spec.tie_embeddings,
        "torch_dtype": {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[dtype],
        # transformers checks layer_types against its own words: none at all where one layer has none
        **({"layer_types": [layer["layer_type"] for layer in layers]}
           if all(layer["layer_type"] for layer in layers) else {}),
        "layers": layers,
        "package": package,
        "spec": spec.model_dump(mode="json", exclude={"search"}),
    }


def _is_causal(spec: Spec) -> bool:
    return all(getattr(spec.blocks[name].mixer, "causal", True) and spec.blocks[name].mixer.kind != "quasiseparable"
               for name in layer_names(spec))


def export(spec: Spec | str | Path, out: str | Path, weights: str | Path | None = None, dtype: str = "fp32",
           target: Target | None = None, force: bool = False, head: str | None = None, model: str | None = None,
           seed: int = 0) -> Exported:
    """Write `spec`'s model to the folder `out` (see the module's docstring).

    weights: a safetensors file of this spec's model (`composer.save`, `mixc train --out`); None: a fresh
    initialisation from `seed`. dtype: the weights' dtype in the file. target: what the kernels are planned
    for (default: this process's GPU, else an H200). head: "lm" (causal models' default) or "masked-lm"
    (encoders' default: Hydra, M2-BERT).
    """
    from composer.loader import load

    source_path = None if isinstance(spec, Spec) else Path(spec)
    if source_path is not None:
        spec = load(source_path, model=model)
    if dtype not in DTYPES:
        raise ExportError(f"dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    causal = _is_causal(spec)
    head = head or ("lm" if causal else "masked-lm")
    if head not in HEADS:
        raise ExportError(f"head {head!r}: choose one of {', '.join(HEADS)}")
    if head == "lm" and not causal:
        raise ExportError(f"model `{spec.name}` has bidirectional layers: a language-model head would read the "
                          "tokens it predicts; export it with head masked-lm")
    out = Path(out)
    package = _check_folder(out, force)
    resolved = resolve(spec)
    plans = plans_of(block_kernels(resolved, export_target(target)))

    torch.manual_seed(seed)
    built = build(spec)
    if weights is not None:
        load_weights(built, weights, prefix="model.")
    out.mkdir(parents=True, exist_ok=True)
    klass = camel(spec.name)
    runtime = {WEIGHTS_MODULE, "composer.layers.model", "composer.layers.norms", "composer.kernels.interpreter"}
    runtime |= {m for m in _layer_modules(resolved)}
    runtime |= {type(entry).__module__ for entry in plans.values()}
    modules = vendor(sorted(runtime), package)
    for module in modules:
        (out / module.file_name).write_text(module.source)
    for name, path in data_files(modules).items():
        shutil.copyfile(path, out / name)

    relative = lambda module: "." + flat_name(module)  # noqa: E731 - the export's import spelling
    head_class = f"{klass}ForCausalLM" if head == "lm" else f"{klass}ForMaskedLM"
    prelude = "\n".join([
        "from pathlib import Path", "", "import torch", "import torch.nn.functional as F", "",
        "from .kernel_files import add_kernel_folder", "from .kernel_plan import PLANS",
        f"from {relative(WEIGHTS_MODULE)} import load_weights", "",
        "try:  # the Hugging Face classes at the end need transformers; from_pretrained does not",
        "    from transformers import GenerationMixin, PreTrainedModel",
        "    from transformers.modeling_outputs import CausalLMOutput, MaskedLMOutput",
        "",
        f"    from .configuration_{spec.name} import {klass}Config",
        "except ImportError:",
        "    PreTrainedModel = None",
    ])
    tail = render_template("export/modeling_tail.py.jinja", camel=klass, spec_name=spec.name, causal=head == "lm",
                           head_class=head_class, vocab_size=spec.padded_vocab,
                           output_class="CausalLMOutput" if head == "lm" else "MaskedLMOutput",
                           weights_dtype=str(DTYPES[dtype]).removeprefix("torch."))
    origin = "spec" + (source_path.suffix if source_path is not None else ".json")
    (out / f"modeling_{spec.name}.py").write_text(render_model_source(resolved, origin, relative, prelude, tail))
    (out / f"configuration_{spec.name}.py").write_text(render_template(
        "export/configuration.py.jinja", spec_name=spec.name, camel=klass, model_type=spec.name,
        vocab_size=spec.padded_vocab, hidden_size=spec.d_model, num_layers=len(layer_names(resolved)),
        max_len=spec.max_len, tie_embeddings=spec.tie_embeddings))
    (out / "kernel_plan.py").write_text(_plan_source(plans))
    calls = _kernel_calls(plans)
    (out / "kernel_files.py").write_text(render_template("export/kernel_files.py.jinja", package=package,
                                                         spec_name=spec.name))
    _write_kernels(out / "kernels", calls, package, spec.name)
    (out / "__init__.py").write_text(render_template("export/init.py.jinja", spec_name=spec.name, package=package,
                                                     head_class=head_class))
    config = _config(resolved, package, head, dtype)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save(built, out / "model.safetensors", {"format": "pt"}, prefix="model.", dtype=DTYPES[dtype])
    if source_path is not None:
        shutil.copyfile(source_path, out / f"spec{source_path.suffix}")
    else:
        (out / "spec.json").write_text(json.dumps(spec.model_dump(mode="json"), indent=2) + "\n")
    (out / "README.md").write_text(_model_card(resolved, package, head_class, head, len(calls), weights, dtype,
                                               export_target(target)))
    return Exported(out, package, len(calls), str(weights) if weights else f"fresh initialisation (seed {seed})",
                    AUTO_CLASSES[head])


def _layer_modules(spec: Spec) -> set[str]:
    from composer.codegen.model_source import part_call
    modules = set()
    for name in set(layer_names(spec)):
        for part in ("mixer", "channel"):
            call = part_call(spec, spec.blocks[name], part)
            if call is not None:
                modules.add(call.module)
    return modules


def _model_card(spec: Spec, package: str, head_class: str, head: str, kernels: int, weights, dtype: str,
                target: Target) -> str:
    from composer.planner import plan
    from composer.report import target_text, totals
    the_plan = plan(spec, target)
    rows = ["| layer | block | mixer | channel | params | runs |", "|---|---|---|---|---|---|"]
    rows += [f"| {row.index} | {row.block} | {row.mixer} | {row.channel} | {row.params:,} | {row.kernels.path} |"
             for row in the_plan.layers]
    params = totals(the_plan)["params"]
    auto = AUTO_CLASSES[head]
    return render_template("export/README.md.jinja", spec_name=spec.name, package=package, head_class=head_class,
                           auto=auto, rows="\n".join(rows), params=f"{params:,}", kernels=kernels,
                           weights=str(weights) if weights else "a fresh initialisation", dtype=dtype,
                           target=target_text(target))
