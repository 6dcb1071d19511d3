from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_HALF: _ClassVar[DType]
    DTYPE_FLOAT: _ClassVar[DType]
    DTYPE_EXR: _ClassVar[DType]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
DTYPE_UNSPECIFIED: DType
DTYPE_HALF: DType
DTYPE_FLOAT: DType
DTYPE_EXR: DType
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState

class FrameOptions(_message.Message):
    __slots__ = ("return_mask", "output_dtype", "reply_chunk_bytes")
    RETURN_MASK_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_DTYPE_FIELD_NUMBER: _ClassVar[int]
    REPLY_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    return_mask: bool
    output_dtype: DType
    reply_chunk_bytes: int
    def __init__(self, return_mask: _Optional[bool] = ..., output_dtype: _Optional[_Union[DType, str]] = ..., reply_chunk_bytes: _Optional[int] = ...) -> None: ...

class FrameHeader(_message.Message):
    __slots__ = ("width", "height", "dtype", "channels", "input_space", "output_space", "model", "options", "model_version", "channel_names", "server_seconds", "batch_size", "model_weights")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    INPUT_SPACE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SPACE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_NAMES_FIELD_NUMBER: _ClassVar[int]
    SERVER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MODEL_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    dtype: DType
    channels: int
    input_space: str
    output_space: str
    model: str
    options: FrameOptions
    model_version: str
    channel_names: _containers.RepeatedScalarFieldContainer[str]
    server_seconds: float
    batch_size: int
    model_weights: str
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ..., dtype: _Optional[_Union[DType, str]] = ..., channels: _Optional[int] = ..., input_space: _Optional[str] = ..., output_space: _Optional[str] = ..., model: _Optional[str] = ..., options: _Optional[_Union[FrameOptions, _Mapping]] = ..., model_version: _Optional[str] = ..., channel_names: _Optional[_Iterable[str]] = ..., server_seconds: _Optional[float] = ..., batch_size: _Optional[int] = ..., model_weights: _Optional[str] = ...) -> None: ...

class ReconstructRequest(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: FrameHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[FrameHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class ReconstructReply(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: FrameHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[FrameHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("frame_id", "index", "total", "payload", "header")
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    frame_id: int
    index: int
    total: int
    payload: bytes
    header: FrameHeader
    def __init__(self, frame_id: _Optional[int] = ..., index: _Optional[int] = ..., total: _Optional[int] = ..., payload: _Optional[bytes] = ..., header: _Optional[_Union[FrameHeader, _Mapping]] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: FrameHeader
    chunk: Chunk
    def __init__(self, header: _Optional[_Union[FrameHeader, _Mapping]] = ..., chunk: _Optional[_Union[Chunk, _Mapping]] = ...) -> None: ...

class StreamReply(_message.Message):
    __slots__ = ("chunk",)
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    chunk: Chunk
    def __init__(self, chunk: _Optional[_Union[Chunk, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelDescription(_message.Message):
    __slots__ = ("name", "summary", "paper", "kind", "multiple_of", "needs_weights", "has_weights", "runnable", "is_default", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    PAPER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MULTIPLE_OF_FIELD_NUMBER: _ClassVar[int]
    NEEDS_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    HAS_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    RUNNABLE_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    summary: str
    paper: str
    kind: str
    multiple_of: int
    needs_weights: bool
    has_weights: bool
    runnable: bool
    is_default: bool
    version: str
    def __init__(self, name: _Optional[str] = ..., summary: _Optional[str] = ..., paper: _Optional[str] = ..., kind: _Optional[str] = ..., multiple_of: _Optional[int] = ..., needs_weights: _Optional[bool] = ..., has_weights: _Optional[bool] = ..., runnable: _Optional[bool] = ..., is_default: _Optional[bool] = ..., version: _Optional[str] = ...) -> None: ...

class ListModelsReply(_message.Message):
    __slots__ = ("models", "default_model", "default_input_space", "default_output_space")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_INPUT_SPACE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_OUTPUT_SPACE_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelDescription]
    default_model: str
    default_input_space: str
    default_output_space: str
    def __init__(self, models: _Optional[_Iterable[_Union[ModelDescription, _Mapping]]] = ..., default_model: _Optional[str] = ..., default_input_space: _Optional[str] = ..., default_output_space: _Optional[str] = ...) -> None: ...

class GetServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerInfo(_message.Message):
    __slots__ = ("version", "protocol", "backends", "devices", "device", "backend", "max_message_bytes", "max_pixels", "max_batch", "queue_capacity", "ocio_config", "jobs_enabled", "colorspaces", "default_model")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    QUEUE_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    OCIO_CONFIG_FIELD_NUMBER: _ClassVar[int]
    JOBS_ENABLED_FIELD_NUMBER: _ClassVar[int]
    COLORSPACES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    version: str
    protocol: str
    backends: _containers.RepeatedScalarFieldContainer[str]
    devices: _containers.RepeatedScalarFieldContainer[str]
    device: str
    backend: str
    max_message_bytes: int
    max_pixels: int
    max_batch: int
    queue_capacity: int
    ocio_config: str
    jobs_enabled: bool
    colorspaces: _containers.RepeatedScalarFieldContainer[str]
    default_model: str
    def __init__(self, version: _Optional[str] = ..., protocol: _Optional[str] = ..., backends: _Optional[_Iterable[str]] = ..., devices: _Optional[_Iterable[str]] = ..., device: _Optional[str] = ..., backend: _Optional[str] = ..., max_message_bytes: _Optional[int] = ..., max_pixels: _Optional[int] = ..., max_batch: _Optional[int] = ..., queue_capacity: _Optional[int] = ..., ocio_config: _Optional[str] = ..., jobs_enabled: _Optional[bool] = ..., colorspaces: _Optional[_Iterable[str]] = ..., default_model: _Optional[str] = ...) -> None: ...

class JobSpec(_message.Message):
    __slots__ = ("source", "output", "start", "end", "every", "model", "input_space", "output_space", "resume", "overwrite", "mask_layer", "float_output", "compression", "single")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    EVERY_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_SPACE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SPACE_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    MASK_LAYER_FIELD_NUMBER: _ClassVar[int]
    FLOAT_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    SINGLE_FIELD_NUMBER: _ClassVar[int]
    source: str
    output: str
    start: int
    end: int
    every: int
    model: str
    input_space: str
    output_space: str
    resume: bool
    overwrite: bool
    mask_layer: bool
    float_output: bool
    compression: str
    single: bool
    def __init__(self, source: _Optional[str] = ..., output: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., every: _Optional[int] = ..., model: _Optional[str] = ..., input_space: _Optional[str] = ..., output_space: _Optional[str] = ..., resume: _Optional[bool] = ..., overwrite: _Optional[bool] = ..., mask_layer: _Optional[bool] = ..., float_output: _Optional[bool] = ..., compression: _Optional[str] = ..., single: _Optional[bool] = ...) -> None: ...

class JobRef(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "state", "spec", "done", "total", "fps", "elapsed_seconds", "error", "error_code", "written", "skipped", "output_pattern")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    WRITTEN_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PATTERN_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: JobState
    spec: JobSpec
    done: int
    total: int
    fps: float
    elapsed_seconds: float
    error: str
    error_code: int
    written: int
    skipped: int
    output_pattern: str
    def __init__(self, id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., spec: _Optional[_Union[JobSpec, _Mapping]] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., fps: _Optional[float] = ..., elapsed_seconds: _Optional[float] = ..., error: _Optional[str] = ..., error_code: _Optional[int] = ..., written: _Optional[int] = ..., skipped: _Optional[int] = ..., output_pattern: _Optional[str] = ...) -> None: ...
