"""The benchmark's upstream: a generated PyPI-shaped tree that nginx serves statically.

It holds about 300 small projects (a large Django application's requirement set),
a few large wheels in that set, and projects used only by the single-file tests.
Every page exists pre-rendered in HTML (PEP 503) and JSON (PEP 691), with hashes,
requires-python and core metadata (PEP 658/714), so the upstream does no work per
request and is never the bottleneck.
"""

import base64
import hashlib
import html
import io
import json
import os
import random
import zipfile
from dataclasses import dataclass, field

MB = 1024 * 1024
COLD_SAMPLES = 5


@dataclass
class Workload:
    """What was generated, for the runner to ask for."""

    root: str
    requirements: str
    # project -> filename of its pinned wheel
    pinned: dict = field(default_factory=dict)
    # name of the project with a large page, used for warm page throughput
    page_project: str = ""
    page_files: int = 0
    one_mb: tuple = ("", "")  # (project, filename)
    # Cold files are asked for once per server, so each single-client figure is the median
    # of COLD_SAMPLES files.
    cold_single: list = field(default_factory=list)
    cold_shared: tuple = ("", "")
    cold_line_rate: list = field(default_factory=list)
    cold_size: int = 0
    # filename -> sha256 of every file with real bytes, to check what clients received
    sha256: dict = field(default_factory=dict)


def wheel_bytes(name: str, version: str, payload: int, rng: random.Random) -> tuple[bytes, bytes]:
    """A valid pure-Python wheel of about `payload` bytes, and its METADATA."""
    module = name.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    metadata = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        "Requires-Python: >=3.8\nSummary: devcache benchmark package\n"
    ).encode()
    wheel = b"Wheel-Version: 1.0\nGenerator: devcache-bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files = {
        f"{module}/__init__.py": f'__version__ = "{version}"\n'.encode(),
        f"{module}/data.bin": rng.randbytes(payload),
        f"{dist_info}/METADATA": metadata,
        f"{dist_info}/WHEEL": wheel,
    }
    record = []
    for path, data in files.items():
        digest = hashlib.sha256(data).digest()
        b64 = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        record.append(f"{path},sha256={b64},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    out = io.BytesIO()
    # Stored, not deflated: random bytes do not compress, and it keeps generation fast.
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for path, data in files.items():
            zf.writestr(zipfile.ZipInfo(path, (2020, 1, 1, 0, 0, 0)), data)
    return out.getvalue(), metadata


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Project:
    def __init__(self, name: str):
        self.name = name
        self.files = []  # dicts in PEP 691 shape

    def add(self, filename: str, url: str, digest: str, size: int, metadata_digest: str | None):
        entry = {
            "filename": filename,
            "url": url,
            "hashes": {"sha256": digest},
            "requires-python": ">=3.8",
            "size": size,
            "upload-time": "2024-01-01T00:00:00.000000Z",
        }
        if metadata_digest:
            entry["core-metadata"] = {"sha256": metadata_digest}
            entry["data-dist-info-metadata"] = {"sha256": metadata_digest}
        self.files.append(entry)

    def versions(self):
        seen = []
        for f in self.files:
            v = f["filename"].split("-")[1].removesuffix(".tar.gz")
            if v not in seen:
                seen.append(v)
        return seen

    def without_metadata(self) -> "Project":
        """The same project as an upstream that serves no core metadata lists it."""
        bare = Project(self.name)
        bare.files = [{k: v for k, v in f.items() if k not in ("core-metadata", "data-dist-info-metadata")}
                      for f in self.files]
        return bare

    def html(self) -> str:
        lines = ["<!DOCTYPE html>", "<html><head><meta name=\"pypi:repository-version\" content=\"1.1\">",
                 f"<title>Links for {self.name}</title></head><body>", f"<h1>Links for {self.name}</h1>"]
        for f in self.files:
            attrs = f' data-requires-python="{html.escape(f["requires-python"])}"'
            if "core-metadata" in f:
                m = f["core-metadata"]["sha256"]
                attrs += f' data-dist-info-metadata="sha256={m}" data-core-metadata="sha256={m}"'
            href = f'{f["url"]}#sha256={f["hashes"]["sha256"]}'
            lines.append(f'<a href="{html.escape(href)}"{attrs}>{f["filename"]}</a><br>')
        lines.append("</body></html>")
        return "\n".join(lines) + "\n"

    def json(self) -> str:
        return json.dumps({
            "meta": {"api-version": "1.1"},
            "name": self.name,
            "versions": self.versions(),
            "files": self.files,
        })


def generate(root: str, base_url: str, small_projects: int, large_sizes: list, cold_size: int,
             seed: int = 6) -> Workload:
    """Writes the tree under `root` (served at `base_url`) and returns what it holds."""
    rng = random.Random(seed)
    simple = os.path.join(root, "simple")
    files_dir = os.path.join(root, "files")
    os.makedirs(simple, exist_ok=True)
    os.makedirs(files_dir, exist_ok=True)
    work = Workload(root=root, requirements=os.path.join(root, "requirements.txt"))
    projects = []

    def make(name: str, versions: list, payload: int, in_set: bool, files_url: str = f"{base_url}/files") -> tuple:
        """A project whose newest version has real files; older ones are only listed."""
        project = Project(name)
        module = name.replace("-", "_")
        # Older versions are listed, as on a real index, but never downloaded.
        for v in versions[:-1]:
            for fn in (f"{module}-{v}-py3-none-any.whl", f"{module}-{v}.tar.gz"):
                project.add(fn, f"{files_url}/{name}/{fn}", sha256(fn.encode()), 1000,
                            sha256(fn.encode() + b"m") if fn.endswith(".whl") else None)
        v = versions[-1]
        data, metadata = wheel_bytes(name, v, payload, rng)
        fn = f"{module}-{v}-py3-none-any.whl"
        pdir = os.path.join(files_dir, name)
        os.makedirs(pdir, exist_ok=True)
        with open(os.path.join(pdir, fn), "wb") as fh:
            fh.write(data)
        with open(os.path.join(pdir, fn + ".metadata"), "wb") as fh:
            fh.write(metadata)
        work.sha256[fn] = sha256(data)
        project.add(fn, f"{files_url}/{name}/{fn}", work.sha256[fn], len(data), sha256(metadata))
        projects.append(project)
        if in_set:
            work.pinned[name] = fn
        return name, fn

    for i in range(small_projects):
        count = 2 + (i * 7) % 12
        if i == 0:
            count = 120  # a page the size of a popular framework's
        versions = [f"{1 + k // 10}.{k % 10}" for k in range(count)]
        make(f"benchpkg-{i:03d}", versions, rng.randint(4_000, 60_000), True)
    for j, size in enumerate(large_sizes):
        make(f"bigwheel-{j}", ["1.0", "2.0"], size, True)
    work.page_project = "benchpkg-000"
    work.page_files = 2 * 119 + 1
    work.one_mb = make("onemb", ["1.0"], MB - 600, False)
    work.cold_single = [make(f"coldfile-single-{k}", ["1.0"], cold_size, False)
                        for k in range(COLD_SAMPLES)]
    work.cold_shared = make("coldfile-shared", ["1.0"], cold_size, False)
    # The same size again, from a location nginx sends at a typical line rate.
    work.cold_line_rate = [make(f"coldfile-line-rate-{k}", ["1.0"], cold_size, False,
                                f"{base_url}/line-rate") for k in range(COLD_SAMPLES)]
    work.cold_size = cold_size

    index_html = ["<!DOCTYPE html>", "<html><body>"]
    # The same index again under nometa/simple/, without core metadata (PEP 658), as
    # private indexes and older mirrors serve it: resolvers must read the wheels.
    nometa = os.path.join(root, "nometa", "simple")
    for p in projects:
        for where, page in ((simple, p), (nometa, p.without_metadata())):
            pdir = os.path.join(where, p.name)
            os.makedirs(pdir, exist_ok=True)
            with open(os.path.join(pdir, "index.html"), "w") as fh:
                fh.write(page.html())
            with open(os.path.join(pdir, "index.json"), "w") as fh:
                fh.write(page.json())
        index_html.append(f'<a href="{p.name}/">{p.name}</a><br>')
    index_html.append("</body></html>")
    # The root index in both trees: devpi's mirror reads it to know which projects exist.
    for where in (simple, nometa):
        with open(os.path.join(where, "index.html"), "w") as fh:
            fh.write("\n".join(index_html) + "\n")
        with open(os.path.join(where, "index.json"), "w") as fh:
            json.dump({"meta": {"api-version": "1.1"},
                       "projects": [{"name": p.name} for p in projects]}, fh)
    with open(work.requirements, "w") as fh:
        for name, fn in work.pinned.items():
            fh.write(f"{name}=={fn.split('-')[1]}\n")
    return work
