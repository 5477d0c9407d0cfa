#!/usr/bin/env node
// Prints the closing line CI reads ("N passed, N failed, N skipped") from jest-junit's report.
// With no report (jest never ran), it prints "0 passed, 1 failed" so that nothing reads as green.
const fs = require('fs');

const file = process.argv[2] || 'test-reports/junit.xml';
if (!fs.existsSync(file)) {
  console.log('tests: 0 passed, 1 failed');
  process.exit(1);
}
const xml = fs.readFileSync(file, 'utf8');
const root = /<testsuites\b([^>]*)>/.exec(xml);
const attr = (name) => Number((new RegExp(`\\b${name}="(\\d+)"`).exec(root ? root[1] : '') || [])[1] || 0);
const total = attr('tests');
const failed = attr('failures') + attr('errors');
// jest-junit counts skipped tests in `tests` and marks each with <skipped/>.
const skipped = (xml.match(/<skipped\s*\/>/g) || []).length;
const passed = total - failed - skipped;
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 || total === 0 ? 1 : 0);
