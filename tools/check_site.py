"""Check the built website twice: its files, then every page as a reader sees it in a real browser.

Usage: python tools/check_site.py [_build/html] [--static] [--all] [--page PATTERN ...]

1. Files (``check``): every relative href/src of every HTML page must point at a file that exists (external URLs,
   mailto: and data: URIs are skipped), a #fragment into another page must name an element id there, and a chapter
   page must have at least one image (a chapter without its plots means outputs went missing).
2. Browser (``browse``): the site is served on 127.0.0.1 and each page is opened in headless Chromium (the system
   package, driven by Playwright; requests that leave the machine are blocked, so the site must work offline), then
   the rendered page is inspected for what a reader would see:
   - math: text that still holds TeX (``$x$``, ``\\(``, ``\\[``, ``\\begin{``, common macros) outside code, MathJax
     error nodes (``mjx-merror``), math elements MathJax left alone, pages with math but no rendered ``mjx-container``;
   - raw markdown pipe tables shown as text (``| a | b |`` / ``|---|``);
   - images: broken (naturalWidth 0) or without meaningful alt text (missing, a file name or a hash);
   - console errors, uncaught page errors, same-origin requests that fail or answer >= 400, external requests;
   - blocks wider than the text column (``pre``, ``table``, cell outputs, display math, API signatures): their
     content is wider than their box, or they stick out of the main column;
   - headings numbered twice (a title that carries its own number under automatic numbering), command-line
     options typeset as a dash (``--seeds`` in prose becomes "–seeds"), a missing favicon.
Exits 1 listing one line per problem (page and element), then a summary line with the counts.

The browser check needs Chromium and the ``playwright`` Python package (never ``playwright install``: it drives the
system Chromium). Without them it says how to get them and exits 2; ``--static`` runs the file checks alone.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import os
import shutil
import sys
import threading
from dataclasses import dataclass, field
from functools import partial
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

# ---------------------------------------------------------------------------------------------------------------
# 1. Files: links, anchors and images


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str]] = []
        self.ids: set[str] = set()
        self.images = 0
        self.redirect = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs and attrs["id"]:
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        if tag == "a" and attrs.get("href"):
            self.refs.append(("link", attrs["href"]))
        elif tag in ("img", "script", "source") and attrs.get("src"):
            self.refs.append(("image" if tag == "img" else tag, attrs["src"]))
        elif tag == "link" and attrs.get("href"):
            self.refs.append(("asset", attrs["href"]))
        if tag == "img":
            self.images += 1
        if tag == "meta" and (attrs.get("http-equiv") or "").lower() == "refresh":
            self.redirect = True


def _parse(path: Path) -> _Collector:
    collector = _Collector()
    collector.feed(path.read_text(errors="replace"))
    return collector


def _pages(root: Path) -> list[Path]:
    # _static holds theme templates (unrendered Jinja), not pages
    return sorted(p for p in root.rglob("*.html") if "_static" not in p.relative_to(root).parts)


def check(root: Path) -> list[str]:
    """The file checks: broken internal links, anchors and images, and chapter pages without images."""
    if not root.is_dir():
        return [f"{root} does not exist: build the book first (make book)"]
    parsed = {page: _parse(page) for page in _pages(root)}
    problems = []
    for page, info in parsed.items():
        rel_page = page.relative_to(root)
        for kind, ref in info.refs:
            parts = urlsplit(ref)
            if parts.scheme or ref.startswith(("//", "mailto:", "data:", "javascript:")):
                continue
            if not parts.path:  # a fragment in the same page
                if parts.fragment and parts.fragment not in info.ids and kind == "link":
                    problems.append(f"{rel_page}: anchor #{parts.fragment} not found on the page")
                continue
            target = (page.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{rel_page}: broken {kind} {ref}")
                continue
            if parts.fragment and target.suffix == ".html" and target in parsed:
                if parts.fragment not in parsed[target].ids:
                    problems.append(f"{rel_page}: {ref}: anchor not found in {target.relative_to(root)}")
    for page, info in parsed.items():
        name = page.name
        if name[:2].isdigit() and name[2] == "_" and info.images == 0:
            problems.append(f"{page.relative_to(root)}: a chapter page without a single image")
    return problems


# ---------------------------------------------------------------------------------------------------------------
# 2. Browser

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# A laptop-sized window: the book theme shows both sidebars from 1200 px on, so the text column is at its narrowest.
VIEWPORT = {"width": 1280, "height": 900}
# Pages the browser skips: highlighted module sources (long lines by nature), the search page (empty until a query)
# and redirects (the root index.html); the file checks still cover them.
SKIP = ("_modules/*", "_sources/*", "search.html")
# At most this many lines per kind of problem and page; the rest is counted in one line.
MAX_PER_KIND = 25

INSTALL_HELP = """\
check_site: the browser check needs Chromium and the Playwright Python package; {missing}.
  Chromium:   sudo apt-get install chromium      (Debian/Ubuntu; elsewhere install Chrome or Chromium and set
                                                  CHROMIUM=/path/to/the/browser)
  Playwright: .venv/bin/pip install playwright   (it is in the book extra: pip install -e ".[book]")
Do not run `playwright install`: the check drives the system Chromium. `--static` runs only the file checks."""


def find_chromium() -> str | None:
    """The Chromium (or Chrome) executable: $CHROMIUM, else the first of CHROMIUM_NAMES on the PATH."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def browser_missing() -> str | None:
    """Why the browser check cannot run here (with how to fix it), or None when it can."""
    missing = []
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package is not installed")
    if find_chromium() is None:
        explicit = os.environ.get("CHROMIUM")
        missing.append(f"CHROMIUM={explicit} does not exist" if explicit
                       else f"no Chromium on the PATH (looked for {', '.join(CHROMIUM_NAMES)})")
    return INSTALL_HELP.format(missing=" and ".join(missing)) if missing else None


class _Handler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # The browser drops connections it no longer needs (page closed mid-load): not our problem.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


# Runs in the page once it has loaded: wait for MathJax's first typeset, web fonts and images.
_SETTLE_JS = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    try { await MathJax.startup.promise; } catch (e) { console.error('MathJax: ' + e); }
  }
  for (const img of document.images) img.loading = 'eager';
  await Promise.all([...document.images].map(img => img.decode().catch(() => null)));
  await document.fonts.ready;
}"""

# Runs in the page after _SETTLE_JS: everything a reader would see that is wrong, and what there is to count.
_INSPECT_JS = r"""() => {
  const out = {problems: [], math: 0, tables: 0, images: 0, overflow: 0};
  const add = (kind, text) => out.problems.push([kind, text]);
  const clip = (s, n = 90) => { s = s.replace(/\s+/g, ' ').trim(); return s.length > n ? s.slice(0, n - 1) + '…' : s; };
  const column = document.querySelector('article.bd-article') || document.querySelector('article')
    || document.querySelector('main') || document.body;
  const where = el => {
    const section = el.closest('section[id]');
    const classes = [...el.classList].filter(c => !c.startsWith('CtxtMenu')).slice(0, 2);
    const name = el.tagName.toLowerCase() + classes.map(c => '.' + c).join('');
    return section ? `${name} in #${section.id}` : name;
  };
  const CODE = 'pre, code, kbd, samp, script, style, noscript, template, textarea, mjx-container, .math, .highlight';
  const texts = [];
  const walker = document.createTreeWalker(column, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.data.trim() && !node.parentElement.closest(CODE)) texts.push(node);
  }

  // Math. MathJax turns each .math element (and TeX in outputs) into an mjx-container.
  out.math = column.querySelectorAll('mjx-container').length;
  for (const err of column.querySelectorAll('mjx-merror')) {
    const message = err.getAttribute('data-mjx-error') || 'error';
    add('math', `MathJax error in ${where(err)}: ${message}: "${clip(err.textContent)}"`);
  }
  // MathJax's noundefined package shows an unknown macro as its name in red instead of failing: find those.
  const mjdoc = window.MathJax && MathJax.startup && MathJax.startup.document;
  for (const item of (mjdoc && mjdoc.math) || []) {
    const unknown = [];
    if (item.root && item.root.walkTree) item.root.walkTree(node => {
      const red = node.isKind('mtext') && node.attributes.get('mathcolor') === 'red';
      if (red && /^\\/.test(node.getText())) unknown.push(node.getText());
    });
    if (unknown.length) {
      const at = item.typesetRoot ? where(item.typesetRoot) : 'the page';
      add('math', `undefined TeX macro ${unknown.join(', ')} in ${at}: "${clip(item.math)}"`);
    }
  }
  const unrendered = [...column.querySelectorAll('.math')].filter(el => !el.querySelector('mjx-container'));
  for (const el of unrendered) add('math', `math not rendered in ${where(el)}: "${clip(el.textContent)}"`);
  const TEX = new RegExp([
    String.raw`(?<![\w$\\])\$\$?[^\s$](?:[^$\n]*?[^\s$\\])?\$\$?(?![\w$])`,  // $x$, $$x$$
    String.raw`\\\(|\\\[|\\begin\{`,  // \( \[ \begin{
    String.raw`\\(?:frac|mathbb|mathcal|mathrm|operatorname|sum|prod|gamma|alpha|epsilon|theta|lambda|left|right)\b`,
  ].join('|'));
  const texBlocks = new Set();
  for (const node of texts) {
    const m = node.data.match(TEX);
    if (!m) continue;
    const block = node.parentElement.closest('p, li, dd, dt, td, th, h1, h2, h3, h4, h5, h6, div')
      || node.parentElement;
    if (texBlocks.has(block)) continue;
    texBlocks.add(block);
    add('math', `raw TeX in ${where(block)}: "${clip(node.data.slice(Math.max(0, m.index - 30)))}"`);
  }
  if ((unrendered.length || texBlocks.size) && !out.math) {
    add('math', 'the page has math but MathJax rendered none of it (did MathJax load?)');
  }

  // Markdown pipe tables shown as text.
  // The rule line after the header: |---|---| (which typography may have turned into |—|—|).
  const ROW = /^\s*\|.*\|\s*$/, RULE = /^\s*\|?\s*:?[-–—]+:?\s*(\|\s*:?[-–—]+:?\s*)+\|?\s*$/;
  const tableBlocks = new Set();
  for (const node of texts) {
    const block = node.parentElement.closest('p, li, dd, td, blockquote, div') || node.parentElement;
    if (tableBlocks.has(block) || !node.data.includes('|')) continue;
    const lines = block.textContent.split('\n');
    if (lines.some(l => RULE.test(l)) && lines.filter(l => ROW.test(l)).length >= 2) {
      tableBlocks.add(block);
      add('raw table', `markdown table shown as text in ${where(block)}: "${clip(lines.find(l => ROW.test(l)))}"`);
    }
  }
  out.tables = column.querySelectorAll('table').length;

  // Images.
  const imgs = [...column.querySelectorAll('img')];
  out.images = imgs.length;
  for (const img of imgs) {
    const src = img.getAttribute('src') || '';
    const file = decodeURIComponent(src.split('/').pop().split('?')[0]);
    if (img.complete && img.naturalWidth === 0) add('image', `broken image ${src} in ${where(img)}`);
    const alt = img.getAttribute('alt');
    if (alt === null) { add('alt', `image without alt text: ${file} in ${where(img)}`); continue; }
    const base = alt.split('/').pop();
    if (base === file || /[0-9a-f]{16,}/i.test(alt) || /\.(png|jpe?g|gif|svg|webp)$/i.test(alt)) {
      add('alt', `image whose alt text is a file name, not a description: "${clip(alt, 60)}" in ${where(img)}`);
    }
  }

  // Blocks wider than the column. Report the innermost one (a table, not its scroll wrapper).
  const col = column.getBoundingClientRect(), colStyle = getComputedStyle(column);
  const left = col.left + parseFloat(colStyle.paddingLeft), right = col.right - parseFloat(colStyle.paddingRight);
  const WIDE = 'pre, table, div.cell_output, div.output, div.highlight, div.math, mjx-container[display="true"], '
    + 'div.pst-scrollable-table-container, div.table-wrapper, dl > dt.sig, img, iframe, video';
  const wide = [];
  for (const el of column.querySelectorAll(WIDE)) {
    if (!el.getClientRects().length || el.closest('.margin, .sidebar, aside')) continue;
    const r = el.getBoundingClientRect();
    const scrolls = el.scrollWidth > el.clientWidth + 2 && el.clientWidth > 0;
    const sticksOut = r.right > right + 2 || r.left < left - 2;
    if (scrolls || sticksOut) wide.push({el, r, scrolls});
  }
  const innermost = wide.filter(w => !wide.some(o => o !== w && w.el.contains(o.el)));
  out.overflow = innermost.length;
  for (const {el, r, scrolls} of innermost) {
    let what = '';
    const pre = el.matches('pre') ? el : el.querySelector('pre');
    if (pre) {
      const probe = document.createElement('span');
      probe.textContent = 'x'.repeat(100);
      pre.appendChild(probe);
      const charWidth = probe.getBoundingClientRect().width / 100;
      probe.remove();
      const st = getComputedStyle(pre);
      const room = Math.min(pre.clientWidth, right - left) - parseFloat(st.paddingLeft) - parseFloat(st.paddingRight);
      const fits = Math.floor(room / charWidth);
      const lines = pre.textContent.split('\n');
      const line = lines.find(l => l.length > fits) || lines.find(l => l.trim()) || '';
      what = `line of ${line.length} characters (the column fits ${fits}): "${clip(line, 80)}"`;
    } else if (el.matches('table') || el.querySelector('table')) {
      const row = (el.matches('table') ? el : el.querySelector('table')).querySelector('tr');
      what = `table: "${clip(row ? [...row.cells].map(c => c.textContent.trim()).join(' | ') : el.textContent, 80)}"`;
    } else if (el.matches('mjx-container, div.math')) {
      const doc = window.MathJax && MathJax.startup && MathJax.startup.document;
      const item = doc && doc.getMathItemsWithin ? doc.getMathItemsWithin(el)[0] : null;
      what = `equation: "${clip(item ? item.math : el.textContent, 80)}"`;
    } else {
      what = `"${clip(el.textContent || el.getAttribute('src') || '', 80)}"`;
    }
    const box = scrolls ? {el} : wide.find(o => o.scrolls && o.el.contains(el));
    const size = box ? `${box.el.scrollWidth}px of content in a ${box.el.clientWidth}px box (scrolls sideways)`
      : `${Math.round(r.width)}px wide, ${Math.round(Math.max(r.right - right, left - r.left))}px past the column`;
    add('overflow', `wider than the column: ${where(el)}, ${size}; ${what}`);
  }

  const pageWidth = document.documentElement.scrollWidth;
  if (pageWidth > window.innerWidth + 2) {
    add('overflow', `the whole page scrolls sideways: ${pageWidth}px wide in a ${window.innerWidth}px window`);
  }

  // Headings numbered twice: automatic numbering ("1. ") before a title that has its own ("1. Markov ...").
  for (const h of column.querySelectorAll('h1, h2, h3, h4, h5, h6')) {
    const number = h.querySelector('.section-number');
    if (!number) continue;
    const title = [...h.childNodes].filter(n => n !== number && !(n.classList && n.classList.contains('headerlink')))
      .map(n => n.textContent).join('').trim();
    if (/^\d+(\.\d+)*\.?\s/.test(title)) {
      add('heading', `heading numbered twice: "${clip(number.textContent + title, 80)}"`);
    }
  }

  // Command-line options in prose, where typography turns "--seeds" into an en dash.
  for (const node of texts) {
    const m = node.data.match(/(?:^|[\s(\[“"'])([–—][A-Za-z][\w-]*)/);
    if (m) {
      const text = clip(node.data, 80);
      add('dash', `option typeset as a dash (write it as code): "${m[1]}" in ${where(node.parentElement)}: "${text}"`);
    }
  }

  if (!document.querySelector('link[rel~="icon"]')) add('favicon', 'no favicon (<link rel="icon">)');
  return out;
}"""


@dataclass
class BrowseReport:
    """What the browser saw: problems as (page, kind, text), and counts over all pages."""

    problems: list[tuple[str, str, str]] = field(default_factory=list)
    pages: int = 0
    math: int = 0
    tables: int = 0
    images: int = 0
    overflow: int = 0


def _browser_pages(root: Path, only: list[str] | None) -> list[Path]:
    pages = []
    for page in _pages(root):
        rel = page.relative_to(root).as_posix()
        if any(fnmatch.fnmatch(rel, pattern) for pattern in SKIP):
            continue
        if only and not any(fnmatch.fnmatch(rel, pattern) for pattern in only):
            continue
        if _parse(page).redirect:
            continue
        pages.append(page)
    return pages


def browse(root: Path, only: list[str] | None = None, workers: int | None = None) -> BrowseReport:
    """Open every page of the site under ``root`` in headless Chromium and report what a reader would see wrong.

    ``only``: glob patterns (relative to root) restricting the pages; ``workers``: pages open at once (default: the
    CPU count, at most 4). Raises RuntimeError when Chromium or Playwright is missing (saying how to install them).
    """
    reason = browser_missing()
    if reason:
        raise RuntimeError(reason)
    workers = workers or min(4, os.cpu_count() or 1)
    pages = _browser_pages(root, only)
    server = _Server(("127.0.0.1", 0), partial(_Handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        results = asyncio.run(_browse_all(base, [p.relative_to(root).as_posix() for p in pages], workers))
    finally:
        server.shutdown()
        server.server_close()
    report = BrowseReport()
    for rel, found, seen in results:  # in page order, whatever order they finished in
        report.pages += 1
        report.math += seen["math"]
        report.tables += seen["tables"]
        report.images += seen["images"]
        report.overflow += seen["overflow"]
        report.problems += [(rel, kind, text) for kind, text in found + [tuple(p) for p in seen["problems"]]]
    return report


async def _browse_all(base: str, rels: list[str], workers: int) -> list[tuple[str, list, dict]]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=find_chromium(), headless=True, args=CHROMIUM_ARGS)
        gate = asyncio.Semaphore(workers)

        async def one(rel):
            async with gate:
                return rel, *await _browse_page(browser, base, rel)

        try:
            return await asyncio.gather(*(one(rel) for rel in rels))
        finally:
            await browser.close()


async def _browse_page(browser, base: str, rel: str) -> tuple[list[tuple[str, str]], dict]:
    from playwright.async_api import Error as PlaywrightError

    found: list[tuple[str, str]] = []
    seen = {"problems": [], "math": 0, "tables": 0, "images": 0, "overflow": 0}

    def on_console(msg):
        # A failed load is also reported (with its URL) by the request handlers below.
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            loc = msg.location or {}
            at = f" ({loc.get('url', '').removeprefix(base)}:{loc.get('lineNumber')})" if loc.get("url") else ""
            found.append(("console", f"console error: {msg.text}{at}"))

    def on_response(response):
        if response.url.startswith(base) and response.status >= 400:
            found.append(("404", f"{response.status} for {response.url.removeprefix(base)}"))

    def on_failed(request):
        if request.url.startswith(base):
            found.append(("404", f"request failed: {request.url.removeprefix(base)} ({request.failure})"))
        elif request.url.startswith(("http:", "https:", "ws")):
            found.append(("external", f"external request (the site must work offline): {request.url}"))

    # A fresh context per page: every page is some reader's first (empty storage, cold cache).
    context = await browser.new_context(viewport=VIEWPORT, service_workers="block")
    try:
        # Nothing leaves the machine: the site must not need the network (offline readers, CI).
        await context.route(lambda url: url.startswith(("http:", "https:", "ws")) and not url.startswith(base),
                            lambda route: route.abort("blockedbyclient"))
        page = await context.new_page()
        page.on("console", on_console)
        page.on("pageerror", lambda exc: found.append(
            ("console", f"page error: {exc.name + ': ' if getattr(exc, 'name', '') else ''}{exc.message}")))
        page.on("response", on_response)
        page.on("requestfailed", on_failed)
        await page.goto(base + rel, wait_until="load", timeout=60_000)
        await page.evaluate(_SETTLE_JS)
        seen = await page.evaluate(_INSPECT_JS)
    except PlaywrightError as exc:
        found.append(("browser", f"could not inspect the page: {str(exc).splitlines()[0]}"))
    finally:
        await context.close()
    return found, seen


def _capped(problems: list[tuple[str, str, str]], cap: int | None = MAX_PER_KIND) -> list[str]:
    """One line per problem, at most ``cap`` per page and kind (the rest as a count in one line)."""
    lines, seen = [], {}
    for page, kind, text in problems:
        seen[(page, kind)] = seen.get((page, kind), 0) + 1
        n = seen[(page, kind)]
        if cap is None or n <= cap:
            lines.append(f"{page}: {text}")
        elif n == cap + 1:
            more = sum(1 for p, k, _ in problems if (p, k) == (page, kind)) - cap
            lines.append(f"{page}: ... and {more} more of kind '{kind}' (--all lists them)")
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", nargs="?", default="_build/html", type=Path, help="the built site")
    parser.add_argument("--static", action="store_true", help="only the file checks (links, anchors, images)")
    parser.add_argument("--all", action="store_true",
                        help=f"list every problem (default: at most {MAX_PER_KIND} per page and kind)")
    parser.add_argument("--page", action="append", metavar="PATTERN",
                        help="browse only the pages matching this glob, e.g. 'book/04_*' (repeatable)")
    args = parser.parse_args(argv)
    root = args.root
    problems = check(root)
    for p in problems:
        print(p)
    if not root.is_dir():
        return 1
    if args.static:
        print(f"checked {len(_pages(root))} pages (files only): {len(problems)} problem(s)")
        return 1 if problems else 0
    reason = browser_missing()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    report = browse(root, args.page)
    for line in _capped(report.problems, None if args.all else MAX_PER_KIND):
        print(line)
    total = len(problems) + len(report.problems)
    kinds: dict[str, int] = {}
    for _, kind, _ in report.problems:
        kinds[kind] = kinds.get(kind, 0) + 1
    counts = ([f"files {len(problems)}"] if problems else []) + [f"{k} {n}" for k, n in sorted(kinds.items())]
    print(f"check_site: {report.pages} pages in Chromium, {report.math} math elements rendered, "
          f"{report.tables} tables, {report.images} images, {report.overflow} overflowing blocks; "
          f"{total} problem(s)" + (f" ({', '.join(counts)})" if counts else ""))
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
