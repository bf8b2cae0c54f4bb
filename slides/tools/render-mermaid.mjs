// render-mermaid.mjs: render every .mmd file named on the command line to an .svg beside it,
// with ONE browser for all of them (mmdc starts a browser per file: about 5 s each).
// Usage: node tools/render-mermaid.mjs CONFIG.json PUPPETEER.json FILE.mmd...
import fs from 'node:fs/promises';
import puppeteer from 'puppeteer';
import { renderMermaid } from '@mermaid-js/mermaid-cli';

const [configPath, puppeteerPath, ...files] = process.argv.slice(2);
const mermaidConfig = JSON.parse(await fs.readFile(configPath, 'utf8'));
const browser = await puppeteer.launch({ headless: true, ...JSON.parse(await fs.readFile(puppeteerPath, 'utf8')) });
let failed = 0;
try {
  for (const file of files) {
    const definition = await fs.readFile(file, 'utf8');
    try {
      const { data } = await renderMermaid(browser, definition, 'svg', { mermaidConfig, backgroundColor: 'white' });
      await fs.writeFile(file.replace(/\.mmd$/, '.svg'), data);
    } catch (e) {
      console.error(`render-mermaid: ${file}: ${e.message}`);
      failed += 1;
    }
  }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
