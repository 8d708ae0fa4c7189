# What type checkers see of `import nemorun`: the lazily loaded names of __init__.py, typed.
from nemorun.api import Experiment as Experiment, experiments as experiments, launch as launch, run as run
from nemorun.python_api import (
    Config as Config,
    ConfigMapPackager as ConfigMapPackager,
    DGXCloudExecutor as DGXCloudExecutor,
    DockerExecutor as DockerExecutor,
    FaultTolerance as FaultTolerance,
    GitArchivePackager as GitArchivePackager,
    HybridPackager as HybridPackager,
    KubeflowExecutor as KubeflowExecutor,
    LeptonExecutor as LeptonExecutor,
    LocalExecutor as LocalExecutor,
    LocalTunnel as LocalTunnel,
    Packager as Packager,
    Partial as Partial,
    PatternPackager as PatternPackager,
    Script as Script,
    SkypilotExecutor as SkypilotExecutor,
    SlurmExecutor as SlurmExecutor,
    SSHTunnel as SSHTunnel,
    Torchrun as Torchrun,
    compose_typed as compose_typed,
    to_yaml as to_yaml,
)

__version__: str
__all__: list[str]
