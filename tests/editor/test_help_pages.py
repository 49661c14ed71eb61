"""Issue 9: every registered node has a help page that ComfyUI's node help panel shows.

The frontend fetches /extensions/<pack folder>/docs/<NodeClass>/<locale>.md, then
/extensions/<pack folder>/docs/<NodeClass>.md, and ComfyUI serves /extensions/<pack folder>/ from the pack's
WEB_DIRECTORY. So every class in NODE_CLASS_MAPPINGS needs web/docs/<NodeClass>.md that names each of its inputs
(as `name`), says what it costs, names an example workflow that exists, and links fal's model page.
"""

import re

import pytest

from support import PACK_DIR, load_pack

DOCS = PACK_DIR / "web" / "docs"
NODES = sorted(load_pack().NODE_CLASS_MAPPINGS)


def test_the_pack_serves_its_web_directory(pack):
    assert pack.WEB_DIRECTORY == "./web" and "WEB_DIRECTORY" in pack.__all__
    assert (PACK_DIR / pack.WEB_DIRECTORY / "docs").is_dir()


def test_every_page_belongs_to_a_registered_node(nodes):
    pages = {p.stem for p in DOCS.glob("*.md")} | {p.name for p in DOCS.iterdir() if p.is_dir()}
    assert sorted(pages - set(nodes)) == []


@pytest.mark.parametrize("name", NODES)
def test_help_page_names_every_input_cost_chain_and_model_page(nodes, name):
    cls = nodes[name]
    page = DOCS / f"{name}.md"
    assert page.is_file(), f"{name} has no help page {page.relative_to(PACK_DIR)}"
    text = page.read_text(encoding="utf-8")
    assert text.startswith(f"# {cls.DISPLAY_NAME}\n"), f"{page.name}: first line must be '# {cls.DISPLAY_NAME}'"
    spec = cls.INPUT_TYPES()
    inputs = [n for section in ("required", "optional") for n in spec.get(section, {})]
    missing = [n for n in inputs if f"`{n}`" not in text]
    assert missing == [], f"{page.name} does not name these inputs (as `name`): {missing}"
    sections = re.findall(r"^## (.+)$", text, re.MULTILINE)
    assert "Inputs" in sections or not inputs, f"{page.name} has no '## Inputs' section"
    assert "A chain it fits in" in sections, f"{page.name} has no '## A chain it fits in' section"
    cost_heading = next((h for h in sections if "cost" in h.lower()), None)
    assert cost_heading, f"{page.name} has no section on cost (a '## ...' heading with 'cost' in it)"
    cost = text.split(f"## {cost_heading}", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"\$\d|[Ff]ree|[Nn]othing|[Nn]o published price", cost), f"{page.name}: the cost section names no price"
    workflows = re.findall(r"`([\w.-]+\.json)`", text)
    assert workflows, f"{page.name} names no example workflow"
    for workflow in workflows:
        assert (PACK_DIR / "example_workflows" / workflow).is_file(), f"{page.name} names a missing {workflow}"
    endpoint = getattr(cls, "ENDPOINT", "")
    if endpoint:
        assert f"https://fal.ai/models/{endpoint})" in text or f"https://fal.ai/models/{endpoint} " in text, \
            f"{page.name} does not link fal's model page https://fal.ai/models/{endpoint}"
