#!/usr/bin/env python3
"""`make test-report`: the pages elpips writes, opened in a real headless browser.

Debian's `chromium` (installed by `make deps`) is driven over the DevTools protocol on a pipe
(--remote-debugging-pipe; the standard library suffices). Each page is loaded and must have:

* every image decoded by the browser (complete, with a natural size), and in the report every
  row with its reference, candidate and heatmap (the page marks each image data-loaded="yes");
* no request that leaves the machine: every URL the page asks for is a file: or data: URL (the
  browser's resolver maps every host to nowhere as well, so nothing can get out while it runs);
* no script exception, console error or browser error (a failed load, a blocked resource).

The pages: the report of `elpips check --report` (a three-row manifest of the LPIPS 2AFC images,
LPIPS-AlexNet for speed), and the plots of `elpips rd` (two images, jpeg and webp, two settings):
each SVG figure opened alone, and all of them in one page as <img>s. With --screenshot FILE it
also saves a screenshot of the report.
"""
import argparse, fcntl, json, os, select, shutil, subprocess, sys, tempfile, time

ap = argparse.ArgumentParser()
ap.add_argument("--elpips", required=True)
ap.add_argument("--images", required=True, help="folder with ex_ref.png, ex_p0.png, ex_p1.png")
ap.add_argument("--screenshot")
args = ap.parse_args()

exe = shutil.which("chromium") or shutil.which("chromium-browser")
if not exe:
    sys.exit("test-report: chromium not found; run `make deps` (Debian package chromium)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
         "--host-resolver-rules=MAP * ~NOTFOUND"]
LOCAL = ("file:", "data:", "about:", "blob:", "chrome:", "devtools:")


class Browser:
    """Chromium with the DevTools protocol on fds 3 (commands in) and 4 (replies out), one page."""

    def __init__(self, profile):
        cmd_r, self.cmd_w = os.pipe()
        self.out_r, out_w = os.pipe()

        def fds():
            # Out of the way first (either may already be 3 or 4), then in place, inheritable.
            a, b = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10), fcntl.fcntl(out_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen([exe, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     close_fds=False, preexec_fn=fds)
        os.close(cmd_r)
        os.close(out_w)
        self.buf, self.next_id, self.events = b"", 0, []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=True)

    def _read(self, deadline):
        while b"\0" not in self.buf:
            left = deadline - time.time()
            if left <= 0 or not select.select([self.out_r], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self.out_r, 1 << 16)
            if not chunk:
                raise EOFError("chromium closed its DevTools pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None, session=False, timeout=60):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        os.write(self.cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            m = self._read(deadline)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait(self, method, timeout=60):
        deadline = time.time() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e.get("method") == method:
                    return self.events.pop(i)
            self.events.append(self._read(deadline))

    def evaluate(self, expression):
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}, session=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def open(self, path):
        """Loads `path`; returns what went wrong: requests off the machine, errors, undecoded images."""
        self.events.clear()
        self.call("Page.navigate", {"url": "file://" + os.path.abspath(path)}, session=True)
        self.wait("Page.loadEventFired")
        # Images of the page, decoded (an SVG document's own <image>s have no decode(): it is
        # its load that counts, which loadEventFired covers).
        broken = self.evaluate("""Promise.all([...document.images].map(i => i.decode().then(() => null,
            () => i.getAttribute('src')))).then(r => r.filter(x => x))""")
        problems = [f"image {src} does not decode" for src in broken]
        self.call("Runtime.evaluate", {"expression": "0"}, session=True)  # lets pending events arrive
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Network.requestWillBeSent" and not p["request"]["url"].startswith(LOCAL):
                problems.append(f"requests {p['request']['url']}")
            elif m == "Runtime.exceptionThrown":
                problems.append(f"script exception: {p['exceptionDetails'].get('text')} {p['exceptionDetails'].get('exception', {}).get('description', '')}")
            elif m == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                problems.append(f"console {p['type']}: {[a.get('value', a.get('description')) for a in p['args']]}")
            elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
                problems.append(f"browser error: {p['entry']['text']} {p['entry'].get('url', '')}")
            elif m == "Network.loadingFailed":
                problems.append(f"a load failed: {p.get('errorText')}")
        return [f"{os.path.basename(path)}: {x}" for x in problems]

    def close(self):
        try:
            self.call("Browser.close", timeout=10)
        except Exception:  # noqa: BLE001 -- it may close the pipe before answering
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode not in (0, 1):
        sys.exit(f"test-report: {' '.join(cmd[:2])} failed: {r.stderr}")


with tempfile.TemporaryDirectory() as d:
    for f in ["ex_ref.png", "ex_p0.png", "ex_p1.png"]:
        shutil.copy(os.path.join(args.images, f), d)
    with open(os.path.join(d, "m.csv"), "w") as m:
        m.write("reference,candidate,name\nex_ref.png,ex_p0.png,p0\nex_ref.png,ex_p1.png,p1\nex_ref.png,ex_ref.png,same\n")
    report = os.path.join(d, "report")
    run([args.elpips, "check", "--manifest", os.path.join(d, "m.csv"), "--metric", "lpips-alex",
         "--max-distance", "0.3", "--report", report, "--threads", "1"])
    rd = os.path.join(d, "rd")
    run([args.elpips, "rd", "-q", "--codec", "jpeg,webp", "--settings", "30,70", "--samples", "2", "--bootstrap", "0",
         "--threads", "1", "--out", rd, os.path.join(d, "ex_ref.png"), os.path.join(d, "ex_p0.png")])
    plots = sorted(f for f in os.listdir(rd) if f.endswith(".svg"))
    # The plots as a codec engineer's page would show them.
    with open(os.path.join(rd, "plots.html"), "w") as page:
        page.write("<!doctype html><meta charset=utf-8><title>rd plots</title>"
                   + "".join(f'<img src="{p}" alt="{p}">' for p in plots))

    problems = []
    browser = Browser(os.path.join(d, "profile"))
    try:
        problems += browser.open(os.path.join(report, "index.html"))
        rows = browser.evaluate("""[...document.querySelectorAll('tr.case')].map(tr => ({row: tr.dataset.row,
            images: [...tr.querySelectorAll('img')].map(i => [i.getAttribute('src'), i.dataset.loaded])}))""")
        if sorted(r["row"] for r in rows) != ["0", "1", "2"]:
            problems.append(f"report rows {[r['row'] for r in rows]}, expected 0, 1, 2")
        for r in rows:
            if len(r["images"]) != 3 or any(loaded != "yes" for _, loaded in r["images"]):
                problems.append(f"report row {r['row']}: images {r['images']}, expected 3 loaded")
        if len(plots) != 3:
            problems.append(f"rd wrote {plots}, expected rd.svg and one plot per image")
        for p in plots:
            problems += browser.open(os.path.join(rd, p))
            lines = browser.evaluate("document.querySelectorAll('polyline').length")
            if lines != 2:
                problems.append(f"{p}: {lines} curves drawn, expected 2 (jpeg, webp)")
        problems += browser.open(os.path.join(rd, "plots.html"))
        sizes = browser.evaluate("[...document.images].map(i => [i.naturalWidth, i.naturalHeight])")
        if sizes != [[640, 420]] * len(plots):
            problems.append(f"plots.html: the plots' sizes {sizes}, expected 640x420 each")
    finally:
        browser.close()
    if problems:
        sys.exit("test-report: " + "\n  ".join(problems))
    if args.screenshot:
        page = "file://" + os.path.join(report, "index.html")
        subprocess.run([exe, *FLAGS, "--hide-scrollbars", "--window-size=1400,620", f"--screenshot={os.path.abspath(args.screenshot)}", page],
                       capture_output=True, timeout=120, check=True)
    print(f"test-report: the report ({len(rows)} rows, {3 * len(rows)} images) and {len(plots)} rd plots rendered in "
          f"{os.path.basename(exe)}: every image decoded, no request off the machine, no script or console error")
