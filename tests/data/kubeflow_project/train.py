"""Example training script shipped by packager=configmap in the kubeflow golden cases."""
import sys

from src.my_pkg.model import build

if __name__ == "__main__":
    print("training", build(), "args:", sys.argv[1:])
