"""Open Job Description (specification 2023-09) job bundles for one conversion.

A bundle is a folder that AWS Deadline Cloud submits as is (``deadline bundle submit DIR``) and
that ``openjd run`` runs locally:

* ``template.yaml``: the job template. One step, ``Reconstruct``, whose tasks are frame-range
  chunks: a ``CHUNK[INT]`` task parameter of the ``TASK_CHUNKING`` extension (``chunking=True``),
  or, for schedulers without that extension, a plain ``INT`` parameter holding each chunk's first
  frame (``range: START-END:CHUNK``), the task working out the chunk's last frame. A step
  environment starts one ``hdrlift-serve`` per worker session (the model is loaded once, not once
  per task) unless the job names servers or ``none``. Every task runs
  ``hdr-video INPUT OUTPUT --frames A-B --resume``, so a chunk that runs again skips the frames
  that are complete.
* ``parameter_values.yaml``: the job's parameter values in Deadline Cloud's bundle format.
* ``openjd-params.json``: the same values as one JSON object, for ``openjd run -p file://...``.

Paths are job parameters of type PATH with ``objectType``/``dataFlow``, so Deadline Cloud's job
attachments upload the input and download the output folder, and the worker's path mapping
rewrites them; nothing else in the template names a path of the submitting machine.
"""

from __future__ import annotations

import json
import pathlib

from hdrlift.engine import __version__
from hdrlift.engine.farm.spec import Conversion, video_models

SPEC_VERSION = "jobtemplate-2023-09"
STEP = "Reconstruct"
CHUNK_PARAM = "Frames"  # CHUNK[INT]: a contiguous range A-B (or N)
START_PARAM = "ChunkStart"  # plain-INT fallback: the chunk's first frame
BACKENDS = ["auto", "torch", "onnxruntime", "tensorrt"]


def _str(name: str, default: str, description: str, **extra) -> dict:
    return {"name": name, "type": "STRING", "description": description, "minLength": 1, **extra, "default": default}


def _int(name: str, default: int, description: str, minimum: int, **extra) -> dict:
    return {"name": name, "type": "INT", "description": description, "minValue": minimum, **extra,
            "default": default}


def parameter_definitions(conv: Conversion, *, chunking: bool) -> list[dict]:
    p: list[dict] = []
    if conv.input_is_sequence:
        p.append({"name": "InputDir", "type": "PATH", "objectType": "DIRECTORY", "dataFlow": "IN",
                  "description": "Folder of the SDR image sequence.",
                  "userInterface": {"control": "CHOOSE_DIRECTORY", "label": "Input folder"}})
        p.append(_str("InputName", conv.input.name, "The sequence's file name pattern in that folder "
                      "(name.####.png or name.%04d.png).", userInterface={"label": "Input sequence"}))
    else:
        p.append({"name": "Input", "type": "PATH", "objectType": "FILE", "dataFlow": "IN",
                  "description": "The SDR video (mp4, mov, mkv...).",
                  "userInterface": {"control": "CHOOSE_INPUT_FILE", "label": "Input video"}})
    p.append({"name": "OutputDir", "type": "PATH", "objectType": "DIRECTORY", "dataFlow": "OUT",
              "description": "Folder the EXR frames are written to.",
              "userInterface": {"control": "CHOOSE_DIRECTORY", "label": "Output folder"}})
    p.append(_str("OutputName", conv.output_name, "EXR file name pattern with a frame field (#### or %04d), "
                  "e.g. shot.####.exr; frames keep their source numbers.", minLength=5,
                  userInterface={"label": "Output file names"}))
    p.append(_int("FrameStart", conv.first, "First source frame to convert (frames are numbered from 1).", 1,
                  userInterface={"label": "First frame"}))
    p.append(_int("FrameEnd", conv.last, "Last source frame to convert (inclusive, not before FrameStart).", 1,
                  userInterface={"label": "Last frame"}))
    p.append(_int("ChunkSize", conv.chunk, "Frames per task.", 1, maxValue=100000,
                  userInterface={"label": "Frames per task"}))
    if chunking:
        p.append(_int("TargetChunkSeconds", 0, "0: tasks of ChunkSize frames. Otherwise a scheduler that "
                      "adapts chunk sizes may resize chunks to take about this many seconds.", 0,
                      userInterface={"label": "Target seconds per task"}))
    models = video_models()
    if conv.model not in models:
        models.append(conv.model)
    p.append(_str("Model", conv.model, "Reconstruction model (hdr-video --list-models).", allowedValues=models,
                  userInterface={"control": "DROPDOWN_LIST", "label": "Model"}))
    p.append(_str("OutputColorspace", conv.output_colorspace, "Colour space of the EXRs (an OCIO name or alias).",
                  userInterface={"label": "Output colour space"}))
    devices = ["cpu", "cuda"] + ([conv.device] if conv.device not in ("cpu", "cuda") else [])
    p.append(_str("Device", conv.device, "Where the model runs: the session's hdrlift-serve, or each task "
                  "when Server is none.", allowedValues=devices,
                  userInterface={"control": "DROPDOWN_LIST", "label": "Device"}))
    p.append(_str("Backend", conv.backend, "Inference back end (auto measures torch against onnxruntime once).",
                  allowedValues=BACKENDS, userInterface={"control": "DROPDOWN_LIST", "label": "Back end"}))
    p.append(_str("Server", conv.server, "session: one hdrlift-serve per worker session loads the model once "
                  "for all its tasks; none: every task loads the model; HOST:PORT[,HOST:PORT...]: tasks send "
                  "frames to these hdrlift-serve servers.", userInterface={"label": "hdrlift-serve"}))
    p.append(_str("HdrliftFarm", "hdrlift-farm", "The hdrlift-farm command on the workers: a name on PATH or "
                  "an absolute path (e.g. /opt/hdrlift/venv/bin/hdrlift-farm).",
                  userInterface={"control": "HIDDEN"}))
    return p


def job_template(conv: Conversion, *, chunking: bool = True) -> dict:
    """The job template as a plain dict (YAML/JSON-ready)."""
    farm = "{{Param.HdrliftFarm}}"
    state = "--state={{Session.WorkingDirectory}}/hdrlift-serve.json"
    if conv.input_is_sequence:
        input_arg = "--input={{Param.InputDir}}/{{Param.InputName}}"
    else:
        input_arg = "--input={{Param.Input}}"
    if chunking:
        task_param = {"name": CHUNK_PARAM, "type": "CHUNK[INT]", "range": "{{Param.FrameStart}}-{{Param.FrameEnd}}",
                      "chunks": {"defaultTaskCount": "{{Param.ChunkSize}}",
                                 "targetRuntimeSeconds": "{{Param.TargetChunkSeconds}}",
                                 "rangeConstraint": "CONTIGUOUS"}}
        frames_args = ["--frames={{Task.Param.%s}}" % CHUNK_PARAM]
    else:
        task_param = {"name": START_PARAM, "type": "INT",
                      "range": "{{Param.FrameStart}}-{{Param.FrameEnd}}:{{Param.ChunkSize}}"}
        frames_args = ["--first={{Task.Param.%s}}" % START_PARAM, "--size={{Param.ChunkSize}}",
                       "--last={{Param.FrameEnd}}"]
    step: dict = {
        "name": STEP,
        "description": "Each task converts a contiguous range of frames with hdr-video --frames A-B --resume.",
        "parameterSpace": {"taskParameterDefinitions": [task_param]},
        "stepEnvironments": [{
            "name": "HdrliftServer",
            "description": "Server session: one hdrlift-serve on 127.0.0.1 per worker session, its model "
                           "loaded once for all the session's tasks (Server = session); nothing otherwise.",
            "script": {"actions": {
                "onEnter": {"command": farm, "args": [
                    "session-start", "--server={{Param.Server}}", state, "--model={{Param.Model}}",
                    "--device={{Param.Device}}", "--backend={{Param.Backend}}"]},
                "onExit": {"command": farm, "args": ["session-stop", state]},
            }},
        }],
        "script": {"actions": {"onRun": {"command": farm, "args": [
            "task", *frames_args, input_arg, "--output={{Param.OutputDir}}/{{Param.OutputName}}",
            "--model={{Param.Model}}", "--output-colorspace={{Param.OutputColorspace}}",
            "--device={{Param.Device}}", "--backend={{Param.Backend}}", "--server={{Param.Server}}"]}}},
    }
    if conv.device.startswith("cuda"):
        step["hostRequirements"] = {"amounts": [{"name": "amount.worker.gpu", "min": 1}]}
    template: dict = {"specificationVersion": SPEC_VERSION}
    if chunking:
        template["extensions"] = ["TASK_CHUNKING"]
    template.update({
        "name": conv.name[:128],
        "description": f"hdrlift {__version__}: SDR to scene-linear HDR (OpenEXR), frame-range chunks.",
        "parameterDefinitions": parameter_definitions(conv, chunking=chunking),
        "steps": [step],
    })
    return template


def parameter_values(conv: Conversion, *, chunking: bool = True) -> dict[str, object]:
    """Every job parameter's value for this conversion, by name."""
    values: dict[str, object] = {}
    if conv.input_is_sequence:
        values.update(InputDir=str(conv.input.parent), InputName=conv.input.name)
    else:
        values["Input"] = str(conv.input)
    values.update(OutputDir=str(conv.output_dir), OutputName=conv.output_name, FrameStart=conv.first,
                  FrameEnd=conv.last, ChunkSize=conv.chunk)
    if chunking:
        values["TargetChunkSeconds"] = 0
    values.update(Model=conv.model, OutputColorspace=conv.output_colorspace, Device=conv.device,
                  Backend=conv.backend, Server=conv.server, HdrliftFarm="hdrlift-farm")
    return values


def _yaml(data: object) -> str:
    import yaml  # PyYAML: the farm extra (openjd-model needs it too)

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100, allow_unicode=True)


def validate(template: dict, values: dict[str, object], bundle: pathlib.Path) -> None:
    """Check the template and the values with openjd-model, as ``openjd check``/``openjd run``
    do; raises ValueError with openjd's message. Skipped (returns) without openjd-model."""
    try:
        from openjd.model import create_job, decode_job_template, preprocess_job_parameters
    except ImportError:
        return
    from openjd.model import DecodeValidationError

    try:
        tpl = decode_job_template(template=template, supported_extensions=list(template.get("extensions", [])))
        params = preprocess_job_parameters(job_template=tpl, job_parameter_values={k: str(v) for k, v in values.items()},
                                           job_template_dir=bundle, current_working_dir=bundle)
        create_job(job_template=tpl, job_parameter_values=params)
    except (DecodeValidationError, ValueError) as exc:
        raise ValueError(" ".join(str(exc).split())) from None


def write_bundle(conv: Conversion, bundle: str | pathlib.Path, *, chunking: bool = True,
                 hdrlift_farm: str | None = None) -> pathlib.Path:
    """Write the job bundle for ``conv`` into the folder ``bundle`` (created); returns it.

    ``hdrlift_farm``: the hdrlift-farm command on the workers (default: ``hdrlift-farm`` on PATH)."""
    from hdrlift.engine.atomic import atomic_write_text

    bundle = pathlib.Path(bundle).absolute()
    template = job_template(conv, chunking=chunking)
    values = parameter_values(conv, chunking=chunking)
    if hdrlift_farm:
        values["HdrliftFarm"] = hdrlift_farm
    validate(template, values, bundle)
    header = (f"# OpenJD job template ({SPEC_VERSION}{', TASK_CHUNKING' if chunking else ', no extensions'}) "
              f"written by hdrlift-farm {__version__}.\n"
              f"# Submit: deadline bundle submit {bundle}\n"
              f"# Run here: openjd run {bundle / 'template.yaml'} -p file://{bundle / 'openjd-params.json'}\n")
    atomic_write_text(bundle / "template.yaml", header + _yaml(template))
    atomic_write_text(bundle / "parameter_values.yaml",
                      _yaml({"parameterValues": [{"name": k, "value": v} for k, v in values.items()]}))
    atomic_write_text(bundle / "openjd-params.json", json.dumps(values, indent=2) + "\n")
    return bundle
