"""Pretrained weights by download, against a Hugging Face hub served on 127.0.0.1 (``HF_ENDPOINT``), and torchvision's
weights with no network at all: downloaded once and cached, a broken transfer retried and then named in one line,
and offline use told in one line which file to fetch and where to put it. Nothing here reaches past 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from conftest import need, run_dlcv

ARCH = "test_efficientnet.r160_in1k"  # timm's own tiny test model, whose weights live on the hub
FILE = ("timm/test_efficientnet.r160_in1k", "model.safetensors")


class Server:
    """An HTTP server on 127.0.0.1, on a port of its own, in a thread of its own, until ``close``."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Hub(Server):
    """A Hugging Face hub on 127.0.0.1: ``files[(repo, name)]`` served at ``/REPO/resolve/REVISION/NAME``."""

    def __init__(self, files: dict, truncate: bool = False):
        self.files, self.gets, self.truncate = files, 0, truncate
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def found(self) -> bytes | None:
                parts = self.path.split("?")[0].strip("/").split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    return None
                return hub.files.get(("/".join(parts[:2]), "/".join(parts[4:])))

            def head(self, body: bytes | None) -> None:
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", '"' + hashlib.sha256(body).hexdigest() + '"')
                self.send_header("X-Repo-Commit", "0" * 40)
                self.end_headers()

            def do_HEAD(self):
                self.head(self.found())

            def do_GET(self):
                body = self.found()
                self.head(body)
                if body is not None:
                    hub.gets += 1
                    self.wfile.write(body[: len(body) // 2] if hub.truncate else body)  # half: a broken transfer
                    self.close_connection = True

        super().__init__(Handler)


@pytest.fixture(scope="module")
def served_weights() -> tuple[bytes, dict]:
    """The hub's file for ``ARCH`` (random weights, as safetensors) and its state_dict."""
    import timm
    from safetensors.torch import save

    state = {k: v.contiguous() for k, v in timm.create_model(ARCH, pretrained=False).state_dict().items()}
    return save(state), state


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fit(tmp_path, p1_data, arch: str, weights: str, name: str, env: dict, model: str = "timm"):
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text(f"name: {name}\ndata: {{batch_size: 16, eval_batch_size: 32}}\n"
                      f"model: {{name: {model}, args: {{arch: {arch}, weights: {weights}}}}}\n"
                      "train: {epochs: 1, threads: 1, precision: 32-true}\nembed: {epochs: ''}\n")
    return run_dlcv("classify", "fit", "--config", recipe, "--data", p1_data, "--runs-dir", tmp_path / "runs",
                    env=env)


@pytest.mark.slow
def test_imagenet_weights_come_from_the_hub_once_and_are_cached(tmp_path, p1_data, served_weights):
    body, state = served_weights
    hub = Hub({FILE: body})
    try:
        env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"}
        first = fit(tmp_path, p1_data, ARCH, "imagenet", "first", env)
        assert first.returncode == 0, first.stderr[-2000:]
        predicted = run_dlcv("classify", "predict", "--checkpoint", tmp_path / "runs" / "first" / "best.ckpt",
                             "--images", p1_data / "val_50", "--output", tmp_path / "first.csv", env=env)
        assert predicted.returncode == 0 and hub.gets == 1, predicted.stderr[-1500:]  # no second transfer
    finally:
        hub.close()
    cached = list((tmp_path / "hf").rglob("model.safetensors"))
    assert len(cached) == 1 and cached[0].read_bytes() == body
    check = ("import sys, torch; from dlcv.models import create_model; "
             f"model = create_model('timm', num_classes=4, arch='{ARCH}', weights='imagenet'); "
             "torch.save(model.net.state_dict(), sys.argv[1])")
    done = subprocess.run([sys.executable, "-c", check, str(tmp_path / "loaded.pt")], capture_output=True, text=True,
                          env={**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-1500:]  # offline now: from the cache
    loaded = torch.load(tmp_path / "loaded.pt", weights_only=True)
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if not k.startswith("classifier"))


@pytest.mark.slow
def test_a_broken_transfer_is_retried_then_named_in_one_line(tmp_path, p1_data, served_weights):
    hub = Hub({FILE: served_weights[0]}, truncate=True)
    try:
        env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"}
        done = fit(tmp_path, p1_data, ARCH, "imagenet", "broken", env)
    finally:
        hub.close()
    assert done.returncode != 0 and hub.gets > 1  # the hub's client resumed before giving up
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == (f"dlcv: error: ImageNet weights of '{ARCH}' could not be downloaded (RemoteProtocolError); "
                         f"give a local weights file instead: fetch {hub.url}/{FILE[0]}/resolve/main/{FILE[1]} "
                         "and give its path as the weights "
                         "(model.args.weights: /path/to/file)"), done.stderr[-1500:]
    assert "Traceback" not in done.stderr and not (tmp_path / "runs" / "broken").exists()


def test_offline_the_hub_weights_are_named_with_the_file_to_fetch(tmp_path, p1_data):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    done = fit(tmp_path, p1_data, ARCH, "imagenet", "offline",  # offline as the hub's client is told it is
               {"HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"})
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].endswith(
        f"could not be downloaded (LocalEntryNotFoundError); give a local weights file instead: fetch "
        f"{endpoint}/{FILE[0]}/resolve/main/{FILE[1]} and "
        "give its path as the weights (model.args.weights: /path/to/file)"), done.stderr[-1500:]


@pytest.mark.slow
def test_offline_torchvision_weights_name_the_url_and_the_cache_path_that_serves_them(tmp_path, p1_data):
    from torchvision.models import resnet18

    offline = {"TORCH_HOME": str(tmp_path / "torch"), "https_proxy": f"http://127.0.0.1:{closed_port()}",
               "HTTPS_PROXY": f"http://127.0.0.1:{closed_port()}", "no_proxy": "", "NO_PROXY": ""}
    done = fit(tmp_path, p1_data, "resnet18", "imagenet", "tv_offline", offline, model="torchvision")
    cache = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].endswith(
        "could not be had (URLError); give a local weights file instead: fetch "
        "https://download.pytorch.org/models/resnet18-f37072fd.pth and put it at "
        f"{cache} (torch's hub cache)"), done.stderr[-1500:]
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(resnet18().state_dict(), cache)  # the file, fetched by hand and put where the line says
    done = fit(tmp_path, p1_data, "resnet18", "imagenet", "tv_cached", offline, model="torchvision")
    assert done.returncode == 0, done.stderr[-2000:]


class TlsProxy:
    """An HTTPS proxy on 127.0.0.1 that answers ``CONNECT HOST:443`` itself, as HOST, with a certificate of a test CA.

    A process that trusts the CA (``SSL_CERT_FILE``) and goes through the proxy (``HTTPS_PROXY``) downloads
    ``files[path]`` from ``https://HOST/path`` by its own code, unchanged; nothing leaves 127.0.0.1.
    """

    def __init__(self, folder: Path, host: str, files: dict[str, bytes]):
        import socketserver
        import ssl

        self.ca, self.gets = folder / "ca.pem", 0
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*self._certificates(folder, host))
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                if not self.rfile.readline().startswith(f"CONNECT {host}:443 ".encode()):
                    return
                while self.rfile.readline() not in (b"\r\n", b""):
                    pass
                self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self.wfile.flush()
                with context.wrap_socket(self.connection, server_side=True) as tls:
                    request = b""
                    while b"\r\n\r\n" not in request:
                        request += tls.recv(4096)
                    body = files.get(request.split()[1].decode())
                    if body is None:
                        tls.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        return
                    proxy.gets += 1
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
                                + body)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _certificates(self, folder: Path, host: str) -> tuple[Path, Path]:
        """Make the test CA (``self.ca``) and HOST's certificate and key, with openssl."""
        def openssl(*args):
            subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)

        key, csr, cert, names = folder / "host.key", folder / "host.csr", folder / "host.pem", folder / "names.cnf"
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", folder / "ca.key", "-out", self.ca,
                "-days", "1", "-subj", "/CN=dlcv test CA")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={host}")
        names.write_text(f"subjectAltName=DNS:{host}\n")
        openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", folder / "ca.key", "-CAcreateserial",
                "-out", cert, "-days", "1", "-extfile", names)
        return cert, key

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
def test_torchvision_downloads_its_weights_itself_and_a_file_failing_its_hash_is_named_and_not_kept(tmp_path, p1_data):
    """torchvision's own download (torch.hub, its URL, its progress and its hash check) through a proxy on 127.0.0.1
    that serves download.pytorch.org: bytes whose hash is not the file name's are refused in one line, and the cache
    keeps nothing."""
    from torchvision.models import resnet18

    need(shutil.which("openssl") is not None, "openssl")
    name = "resnet18-f37072fd.pth"
    (tmp_path / "tls").mkdir()
    served = tmp_path / "served.pth"
    torch.save(resnet18().state_dict(), served)  # the right layout, but not the published bytes
    proxy = TlsProxy(tmp_path / "tls", "download.pytorch.org", {f"/models/{name}": served.read_bytes()})
    try:
        env = {"TORCH_HOME": str(tmp_path / "torch"), "SSL_CERT_FILE": str(proxy.ca), "https_proxy": proxy.url,
               "HTTPS_PROXY": proxy.url, "no_proxy": "", "NO_PROXY": ""}
        done = fit(tmp_path, p1_data, "resnet18", "imagenet", "tv_served", env, model="torchvision")
    finally:
        proxy.close()
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    size = f"{served.stat().st_size / 2**20:.1f}M"  # torch.hub's progress bar counts the file's MiB
    assert proxy.gets == 1 and "100%" in done.stderr and f"/{size}" in done.stderr, done.stderr[-2000:]
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].endswith(
        f"could not be had (RuntimeError); give a local weights file instead: fetch "
        f"https://download.pytorch.org/models/{name} and put it at {cache / name} (torch's hub cache)"), \
        done.stderr[-1500:]
    assert not cache.is_dir() or not any(cache.iterdir())  # the refused bytes are not kept


class Files(Server):
    """Files on 127.0.0.1 at ``/NAME`` (as dl.fbaipublicfiles.com serves SAM's), counting the transfers."""

    def __init__(self, files: dict[str, bytes], truncate: bool = False):
        self.gets = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                body = files.get(self.path.strip("/"))
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                outer.gets += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if truncate else body)
                self.close_connection = True

        super().__init__(Handler)


@pytest.fixture(scope="module")
def sam_file() -> bytes:
    import io

    from dlcv.models.sam import build_sam

    torch.manual_seed(0)
    buffer = io.BytesIO()
    torch.save(build_sam("vit_tiny").state_dict(), buffer)
    return buffer.getvalue()


def sam_masks(tmp_path, url: str, output: str, env: dict):
    from dlcv.data.synth import synth_p2

    images = tmp_path / "p2_data" / "validation"
    if not images.is_dir():
        synth_p2(tmp_path, train=1, validation=1, size=64)
    return run_dlcv("sam", "masks", "--checkpoint", url, "--model", "vit_tiny", "--images", images, "--output",
                    tmp_path / output, "--set", "generator.points_per_side=4", env=env)


@pytest.mark.slow
def test_a_sam_checkpoint_by_address_is_downloaded_once_with_progress_then_cached(tmp_path, sam_file):
    files = Files({"segment_anything/sam_vit_tiny.pth": sam_file})
    env = {"TORCH_HOME": str(tmp_path / "torch")}
    try:
        url = f"{files.url}/segment_anything/sam_vit_tiny.pth"
        first = sam_masks(tmp_path, url, "first", env)
        assert first.returncode == 0, first.stderr[-1500:]
        assert "100%" in first.stderr  # torch's progress bar
        second = sam_masks(tmp_path, url, "second", env)
        assert second.returncode == 0, second.stderr[-1500:]
        assert files.gets == 1
    finally:
        files.close()
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "sam_vit_tiny.pth"
    assert cached.read_bytes() == sam_file


@pytest.mark.slow
def test_a_cut_sam_download_is_named_in_one_line_and_leaves_nothing_cached(tmp_path, sam_file):
    files = Files({"sam_vit_tiny.pth": sam_file}, truncate=True)
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "sam_vit_tiny.pth"
    try:
        done = sam_masks(tmp_path, f"{files.url}/sam_vit_tiny.pth", "cut", {"TORCH_HOME": str(tmp_path / "torch")})
    finally:
        files.close()
    assert done.returncode == 2 and "Traceback" not in done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith(f"dlcv: error: SAM checkpoint {files.url}/sam_vit_tiny.pth: the download gave no "
                           "checkpoint (") and line.endswith(f"and put it at {cached} (torch's hub cache), or give its "
                                                             "path with --checkpoint"), line
    assert not cached.exists() and not (tmp_path / "cut").exists()
    offline = f"http://127.0.0.1:{closed_port()}/sam_vit_tiny.pth"
    done = sam_masks(tmp_path, offline, "offline", {"TORCH_HOME": str(tmp_path / "torch")})
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1] == (
        f"dlcv: error: SAM checkpoint could not be downloaded (URLError); give a local weights file instead: fetch "
        f"{offline} and put it at {cached} "
        "(torch's hub cache), or give its path with --checkpoint")


@pytest.mark.slow
def test_offline_fcn32s_vgg16_weights_name_their_url_and_cache_path(tmp_path):
    from dlcv.data.synth import synth_p2

    data = synth_p2(tmp_path, train=2, validation=1, size=64)
    offline = {"TORCH_HOME": str(tmp_path / "torch"), "https_proxy": f"http://127.0.0.1:{closed_port()}",
               "HTTPS_PROXY": f"http://127.0.0.1:{closed_port()}", "no_proxy": "", "NO_PROXY": ""}
    done = run_dlcv("segment", "fit", "--config", "configs/seg/fcn32s.yaml", "--data", data, "--runs-dir",
                    tmp_path / "runs", "--set", "data.train_size=64", "--set", "data.eval_size=64", env=offline,
                    cwd=Path(__file__).resolve().parents[1])
    cache = tmp_path / "torch" / "hub" / "checkpoints" / "vgg16-397923af.pth"
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].endswith(
        f"fetch https://download.pytorch.org/models/vgg16-397923af.pth and put it at {cache} (torch's hub cache)"), \
        done.stderr[-1500:]
