"""Print a pip/uv constraints file holding each requirement at its lower bound.

Usage: python .ci/floors.py EXTRA... > floors.txt

For the project's dependencies and the named extras, each requirement with a ``>=`` bound
becomes ``name==bound.*`` (the bound's release series: ``tensorflow-cpu>=2.16`` gives
2.16.1, there being no 2.16.0). uv's ``--resolution lowest-direct`` alone does not get there:
it takes the newest of each indirect package (protobuf 5 among them, which TensorFlow 2.16
does not take), and TensorFlow had gone to 2.18 unsaid. With these constraints the floors install, or the
resolver says why they cannot be installed together.
"""

import sys
import tomllib

from packaging.requirements import Requirement
from packaging.version import Version

project = tomllib.loads(open("pyproject.toml", encoding="utf-8").read())["project"]
requirements = list(project["dependencies"])
for extra in sys.argv[1:]:
    requirements += project["optional-dependencies"][extra]

floors: dict[str, Version] = {}
for requirement in map(Requirement, requirements):
    for clause in requirement.specifier:
        if clause.operator == ">=":
            floors[requirement.name] = max(floors.get(requirement.name, Version("0")), Version(clause.version))
for name, floor in sorted(floors.items()):
    print(f"{name}=={floor}.*")
