"""crowdmesh.fl: the learning side of CrowdSFL as a pure numpy library.

Models (a back-propagation network with a documented float32 byte layout), local training,
aggregation (FedAvg, coordinate-wise median), feature preprocessing from the task spec alone,
dataset loaders (the only file access in this package), partitioning and the free-rider check.
Randomness is always a caller-supplied ``numpy.random.Generator``; see docs/fl.md.
"""

from crowdmesh.fl.aggregate import fedavg, median
from crowdmesh.fl.datasets import (
    BCWD_SPEC,
    HDD_SPEC,
    WDBC_FEATURES,
    Dataset,
    DatasetSpec,
    data_dir,
    load_csv,
    load_default,
    load_named,
    parse_csv,
)
from crowdmesh.fl.features import Feature, encode, encoded_width
from crowdmesh.fl.federated import BASELINE_TRAIN, baseline_model_spec, run_federated, run_round
from crowdmesh.fl.freerider import (
    DEFAULT_THRESHOLD,
    FreeRiderVerdict,
    check_free_rider,
    reference_move,
)
from crowdmesh.fl.model import (
    Model,
    accuracy,
    forward,
    init_model,
    loss_and_grads,
    model_from_bytes,
    model_from_vector,
    model_to_bytes,
    model_to_vector,
    predict,
)
from crowdmesh.fl.partition import expected_skew, iid_partition, label_skew, label_skew_partition
from crowdmesh.fl.spec import ModelSpec, TrainSpec
from crowdmesh.fl.training import generator_from_rng, local_train

__all__ = [
    "BASELINE_TRAIN",
    "BCWD_SPEC",
    "DEFAULT_THRESHOLD",
    "HDD_SPEC",
    "WDBC_FEATURES",
    "Dataset",
    "DatasetSpec",
    "Feature",
    "FreeRiderVerdict",
    "Model",
    "ModelSpec",
    "TrainSpec",
    "accuracy",
    "baseline_model_spec",
    "check_free_rider",
    "data_dir",
    "encode",
    "encoded_width",
    "expected_skew",
    "fedavg",
    "forward",
    "generator_from_rng",
    "iid_partition",
    "init_model",
    "label_skew",
    "label_skew_partition",
    "load_csv",
    "load_default",
    "load_named",
    "local_train",
    "loss_and_grads",
    "median",
    "model_from_bytes",
    "model_from_vector",
    "model_to_bytes",
    "model_to_vector",
    "parse_csv",
    "predict",
    "reference_move",
    "run_federated",
    "run_round",
]
