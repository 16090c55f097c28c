#!/usr/bin/env python3
"""`make test-report`: the report of `elpips check --report` in a real browser.

Runs a three-row manifest (the LPIPS 2AFC images, LPIPS-AlexNet for speed) with --report, opens
index.html in headless Chromium (Debian's `chromium`, installed by `make deps`), and reads the
rendered DOM: every row must be there, each with its reference, candidate and heatmap image
decoded by the browser (the page marks each image data-loaded="yes" on load). Fails when a row
or an image is missing. With --screenshot FILE it also saves a screenshot of the page.
"""
import argparse, html.parser, os, shutil, subprocess, sys, tempfile

ap = argparse.ArgumentParser()
ap.add_argument("--elpips", required=True)
ap.add_argument("--images", required=True, help="folder with ex_ref.png, ex_p0.png, ex_p1.png")
ap.add_argument("--screenshot")
args = ap.parse_args()

browser = shutil.which("chromium") or shutil.which("chromium-browser")
if not browser:
    sys.exit("test-report: chromium not found; run `make deps` (Debian package chromium)")

class Rows(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.current = [], None
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "case" in a.get("class", "").split():
            self.current = {"row": a.get("data-row"), "images": []}
            self.rows.append(self.current)
        if tag == "img" and self.current is not None:
            self.current["images"].append((a.get("src"), a.get("data-loaded")))

with tempfile.TemporaryDirectory() as d:
    for f in ["ex_ref.png", "ex_p0.png", "ex_p1.png"]:
        shutil.copy(os.path.join(args.images, f), d)
    with open(os.path.join(d, "m.csv"), "w") as m:
        m.write("reference,candidate,name\nex_ref.png,ex_p0.png,p0\nex_ref.png,ex_p1.png,p1\nex_ref.png,ex_ref.png,same\n")
    report = os.path.join(d, "report")
    r = subprocess.run([args.elpips, "check", "--manifest", os.path.join(d, "m.csv"), "--metric", "lpips-alex",
                        "--max-distance", "0.3", "--report", report, "--threads", "1"], capture_output=True, text=True)
    if r.returncode not in (0, 1):
        sys.exit(f"test-report: elpips check failed: {r.stderr}")
    page = "file://" + os.path.join(report, "index.html")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"]
    dom = subprocess.run([browser, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120)
    p = Rows()
    p.feed(dom.stdout)
    problems = []
    if sorted(x["row"] for x in p.rows) != ["0", "1", "2"]:
        problems.append(f"rows in the rendered page: {[x['row'] for x in p.rows]}, expected 0, 1, 2")
    for x in p.rows:
        if len(x["images"]) != 3:
            problems.append(f"row {x['row']}: {len(x['images'])} images, expected 3")
        for src, loaded in x["images"]:
            if loaded != "yes":
                problems.append(f"row {x['row']}: image {src} did not load (data-loaded={loaded})")
    if problems:
        sys.exit("test-report: " + "; ".join(problems))
    if args.screenshot:
        subprocess.run([browser, *flags, "--hide-scrollbars", "--window-size=1400,620", f"--screenshot={os.path.abspath(args.screenshot)}", page],
                       capture_output=True, timeout=120, check=True)
    print(f"test-report: {len(p.rows)} rows, {sum(len(x['images']) for x in p.rows)} images rendered and decoded in {os.path.basename(browser)}")
