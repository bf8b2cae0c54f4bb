#!/usr/bin/env bash
# build.sh: build every deck (slides/NN-topic.md) to OUT/NN-topic.html and OUT/NN-topic.pdf, offline.
# Usage: slides/build.sh OUT        (cmake --build --preset dev --target slides runs it)
# Diagrams are rendered first into OUT/diagrams: every .mmd with one browser, .dot with Graphviz,
# .gp with gnuplot; a lab plot a deck shows (../labs/...svg) is copied, redrawn from its .gp if
# that is committed too. Then Marp makes the HTML decks (one file each, keyboard navigation) and
# the PDFs.
# Needs: Debian chromium, poppler-utils, graphviz, gnuplot-nox, fonts-wqy-microhei, and `npm ci`
# in slides/ (the lockfile pins @marp-team/marp-cli and @mermaid-js/mermaid-cli). Nothing is
# fetched from the network.
# With --check-tools it only says what is missing (exit 1) or nothing (exit 0).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$1 (apt-get install $2)"); }
need /usr/bin/chromium chromium
need dot graphviz
need gnuplot gnuplot-nox
need pdfinfo poppler-utils
need node nodejs
# The decks quote the notes in Chinese: without a CJK font those characters print as boxes.
fc-list :lang=zh 2>/dev/null | grep -q . || missing+=("a Chinese font (apt-get install fonts-wqy-microhei)")
[ -x "$here/node_modules/.bin/marp" ] && [ -d "$here/node_modules/@mermaid-js/mermaid-cli" ] ||
  missing+=("marp-cli and mermaid-cli (cd slides && npm ci)")
if [ ${#missing[@]} -gt 0 ]; then
  echo "slides/build.sh: missing tools: install them and build again:" >&2
  printf '  %s\n' "${missing[@]}" >&2
  exit 1
fi
if [ "${1:-}" = "--check-tools" ]; then exit 0; fi
[ $# -eq 1 ] || { echo "usage: slides/build.sh OUT" >&2; exit 2; }

mkdir -p "$1"
out=$(cd "$1" && pwd)
# Chromium writes its profile and caches under $HOME otherwise: keep them in the build tree.
export XDG_CONFIG_HOME="$out/.xdg/config" XDG_CACHE_HOME="$out/.xdg/cache" XDG_DATA_HOME="$out/.xdg/data"
export PUPPETEER_SKIP_DOWNLOAD=1
mkdir -p "$XDG_CONFIG_HOME" "$XDG_CACHE_HOME" "$XDG_DATA_HOME"

start=$SECONDS
rm -rf "$out/diagrams" && mkdir -p "$out/diagrams"
cp "$here"/diagrams/* "$out/diagrams/"
cp "$here"/[0-9][0-9]-*.md "$out/"
# An image a deck takes from a lab (`../labs/NN-topic/results/...svg`, committed by the lab) is
# copied to OUT/labs/..., and the deck's copy points there, so the HTML in OUT finds it too.
rm -rf "$out/labs"
for deck in "$out"/[0-9][0-9]-*.md; do
  { grep -o '](\.\./labs/[^) ]*' "$deck" || true; } | cut -c11- | while read -r ref; do
    mkdir -p "$out/labs/$(dirname "$ref")" && cp "$here/../labs/$ref" "$out/labs/$ref"
    gp="$here/../labs/${ref%.svg}.gp"
    # A plot whose gnuplot script is committed beside it is drawn again for the slide: the same
    # script and data on a terminal the size of the slide's image box, in the slide's type size.
    if [ -f "$gp" ]; then
      slide_term="set terminal svg size 1220,470 noenhanced font 'DejaVu Sans,18' background '#ffffff'"
      (cd "$(dirname "$gp")" && sed '/^set terminal/d; /^set output/d' "$gp" |
        gnuplot -e "$slide_term; set output '$out/labs/$ref'" -)
    fi
  done
  sed -i 's#](\.\./labs/#](labs/#g' "$deck"
done
cd "$out/diagrams"

shopt -s nullglob
mmd=(*.mmd)
if [ ${#mmd[@]} -gt 0 ]; then
  (cd "$here" && node tools/render-mermaid.mjs mermaid-config.json puppeteer-config.json "${mmd[@]/#/$out/diagrams/}")
fi
for f in *.dot; do dot -Tsvg -o "${f%.dot}.svg" "$f"; done
for f in *.gp; do
  # `root`: the repository, for a plot of a lab's committed data (diagrams/bench-*.gp)
  gnuplot -e "set terminal svg size 800,440 font 'DejaVu Sans,20' background '#ffffff'" \
          -e "set output '${f%.gp}.svg'; root='$here/..'" "$f"
done
echo "slides: diagrams rendered in $((SECONDS - start)) s"

cd "$out"
decks=([0-9][0-9]-*.md)
marp=("$here/node_modules/.bin/marp" --config-file "$here/marp.config.mjs" --theme-set "$here/themes")
# Two decks at a time: the machine's cores are shared.
"${marp[@]}" --parallel 2 --no-stdin -q --input-dir "$out" --output "$out"
"${marp[@]}" --parallel 2 --no-stdin -q --pdf --input-dir "$out" --output "$out"
echo "slides: ${#decks[@]} decks built in $((SECONDS - start)) s: $out/NN-topic.{html,pdf}"
