"""Lints a SAM template as CloudFormation receives it: after the SAM transform.

cfn-lint (and so `sam validate --lint`) skips some rules on a template with the Serverless
transform, W3037 (IAM actions that do not exist) among them. This applies the transform offline
(samtranslator, no AWS call) and runs cfn-lint on the result, so the execution roles' policies
are checked too. Run with .venv-sam's Python: infra/sam-tools.sh installs both libraries there.

Usage: .venv-sam/bin/python infra/sam-lint.py template.yaml
"""

import json
import os
import subprocess
import sys
import tempfile

# The transform fills in pseudo parameters such as AWS::Region; any region will do.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from samtranslator.translator.transform import transform  # noqa: E402
from samtranslator.yaml_helper import yaml_parse  # noqa: E402


class NoManagedPolicies:
    """The template names no managed policies, so nothing needs looking up in IAM."""

    def load(self):
        return {}


def main(path):
    with open(path, encoding="utf-8") as f:
        template = yaml_parse(f.read())
    # `sam build` turns the local CodeUri into an S3 location at package time; the transform
    # accepts only the latter, and the code location does not matter to the lint.
    functions = [
        r.get("Properties", {})
        for r in template.get("Resources", {}).values()
        if r.get("Type") == "AWS::Serverless::Function"
    ]
    globals_function = template.get("Globals", {}).get("Function", {})
    for props in functions + [globals_function]:
        if "CodeUri" in props:
            props["CodeUri"] = "s3://sam-lint/code.zip"
    transformed = transform(template, {}, NoManagedPolicies())
    with tempfile.NamedTemporaryFile(
        "w", suffix=".json", prefix="transformed-", delete=False
    ) as out:
        json.dump(transformed, out, indent=1)
    try:
        cfn_lint = os.path.join(os.path.dirname(sys.executable), "cfn-lint")
        result = subprocess.run([cfn_lint, out.name])
    finally:
        os.unlink(out.name)
    if result.returncode == 0:
        print(f"{path}: the transformed template passes cfn-lint")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "template.yaml"))
