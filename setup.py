from pathlib import Path

from setuptools import find_packages, setup

about = {}
exec(Path("mlpipeline/__init__.py").read_text(encoding="utf-8"), about)

setup(
    name="mlpipeline",
    version=about["__version__"],
    description="A queue daemon for machine-learning experiments: every version of every model script, "
    "each in its own process, with a journal that survives crashes.",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["mlpipeline", "mlpipeline.*"]),
    python_requires=">=3.9",
    install_requires=[
        "filelock>=3.12",
        "psutil>=5.9",
        "rich>=13",
        "tomli>=1.1; python_version < '3.11'",
    ],
    extras_require={
        "torch": ["torch>=2.0"],
        "tensorflow": ["tensorflow>=2.13"],
        "tensorflow-cpu": ["tensorflow-cpu>=2.13"],
        "ray": ["ray==2.60.0"],  # the release the Ray executor is tested with
        "plot": ["matplotlib>=3.7"],
        # MLflow's client without its server; its sqlite store needs SQLAlchemy and Alembic.
        "mlflow": ["mlflow-skinny>=3.0,<4", "sqlalchemy>=2", "alembic>=1.12"],
        "tensorboard": ["tensorboard>=2.12"],
        "test": ["pytest>=7", "pytest-timeout>=2.1", "hypothesis>=6"],
        "docs": ["sphinx>=7", "myst-parser>=2"],
    },
    entry_points={"console_scripts": ["mlpipeline=mlpipeline.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Operating System :: POSIX",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
