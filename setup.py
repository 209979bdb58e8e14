"""Ships conf/ inside the package. conf/ stays at the top of the repository, the tree users read
and edit; a wheel (and so `pip install .` or an index) carries a copy as resnet_lab/conf, which
an installed resnet_lab composes from. Everything else is declared in setup.cfg."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithConfigs(build_py):
    def run(self) -> None:
        super().run()
        if not self.editable_mode:  # an editable install reads conf/ in place
            shutil.copytree(Path(__file__).parent / "conf", Path(self.build_lib) / "resnet_lab" / "conf", dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildWithConfigs})
