// Puppeteer (pulled in by mermaid-cli) must not download a browser: the build uses Debian's
// /usr/bin/chromium (apt-get install chromium), and the machine may have no network but npm's.
module.exports = { skipDownload: true };
