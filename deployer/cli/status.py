"""`deployer status`: the environments as a document (for --json) and as tables."""

from __future__ import annotations

import time

from rich.console import Console
from rich.table import Table

from deployer.cloud.port import CloudPort


def status_document(cloud: CloudPort) -> dict:
    """The JSON contract of `deployer status --json`."""
    from deployer.localcloud.client import LocalCloud, environment_view

    doc: dict = {"target": cloud.name, "supervisor": None, "environments": [], "images": []}
    if isinstance(cloud, LocalCloud):
        if not cloud.running() and not cloud.state().stacks:
            return doc  # nothing there: don't start a supervisor just to say so
        state = cloud.raw_state()  # starts (and so recovers) the supervisor if needed
        doc["supervisor"] = {"pid": state["supervisor"]["pid"], "url": cloud.ensure_supervisor()}
        environments = [environment_view(s, state) for s in state["stacks"].values()]
        doc["images"] = [{"image_id": i["image_id"], "name": i["name"],
                          "release": i["tags"].get("Release"), "size_bytes": i["size_bytes"],
                          "files": i["files"], "created_at": i["created_at"]}
                         for i in state["images"].values() if i["state"] == "available"]
    else:
        environments = [v for s in ("codedeploy", "cloudformation", "packer")
                        if (v := cloud.describe_environment(s)) is not None]
        doc["images"] = [i.model_dump() for i in cloud.list_images()]
    for view in environments:
        doc["environments"].append({
            "strategy": view.strategy, "stack_name": view.stack_name,
            "status": view.stack_status, "url": view.url, "release": view.release,
            "parameters": view.parameters, "outputs": view.outputs,
            "instances": [{"id": i.instance_id, "pid": i.pid, "release": i.release,
                           "state": i.state, "target_health": i.target_health,
                           "image_id": i.image_id, "endpoint": i.endpoint}
                          for i in view.instances],
        })
    return doc


def print_status(doc: dict, console: Console) -> None:
    if not doc["environments"]:
        console.print(f"no environments on the {doc['target']} target "
                      "(create one with 'deployer up --strategy S --version V')",
                      soft_wrap=True)
    if doc.get("supervisor"):
        console.print(f"local cloud supervisor: pid {doc['supervisor']['pid']}")
    for env in doc["environments"]:
        params = ", ".join(f"{k}={v}" for k, v in sorted(env["parameters"].items()))
        console.print(f"\n[bold]{env['stack_name']}[/] ({env['strategy']}): {env['status']}"
                      f"  {env['url'] or ''}\n  parameters: {params}")
        table = Table(show_header=True, header_style="bold")
        for col in ("instance", "pid", "image", "release", "state", "target health"):
            table.add_column(col)
        for inst in env["instances"]:
            table.add_row(inst["id"], str(inst["pid"] or ""), inst["image_id"] or "-",
                          inst["release"] or "-", inst["state"], inst["target_health"] or "-")
        console.print(table)
    if doc["images"]:
        table = Table(title="images", title_justify="left")
        for col in ("image", "name", "release", "size", "age"):
            table.add_column(col)
        for img in doc["images"]:
            age = time.time() - img.get("created_at", time.time())
            table.add_row(img["image_id"], img["name"], img.get("release") or "-",
                          f"{img['size_bytes'] / 1e6:.0f} MB", f"{age / 60:.0f} min")
        console.print(table)
