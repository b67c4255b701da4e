// Type-checks every dashboard in ../dashboards against Grafana's published
// dashboard schema (the Dashboard type of @grafana/schema). Each JSON file
// becomes an object literal assigned to `Dashboard`, so TypeScript's excess
// property checks catch misspelt fields and its literal types catch values
// the schema does not allow (a panel's gridPos, a variable's type, ...).
// Exit 0 when all pass; otherwise tsc's errors, with the file they came from.
import { readdirSync, readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dir = process.argv[2] ?? join(here, '..', 'dashboards');
const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
if (files.length === 0) {
  console.error(`no dashboards in ${dir}`);
  process.exit(1);
}
const work = mkdtempSync(join(here, '.check-'));
try {
  const sources = files.map((f, i) => {
    const json = JSON.parse(readFileSync(join(dir, f), 'utf8'));
    const path = join(work, `${f.replace(/\W/g, '_')}.ts`);
    writeFileSync(
      path,
      `// ${f}\nimport type { Dashboard } from '@grafana/schema';\n` +
        // The schema's string enums (ThresholdsMode, MappingType, ...) as
        // the unions of their values, which is what JSON can hold.
        'type Json<T> = T extends string ? `${T}` : T extends Array<infer U> ? Array<Json<U>> : ' +
        'T extends object ? { [K in keyof T]: Json<T[K]> } : T;\n' +
        `export const dashboard${i}: Json<Dashboard> = ${JSON.stringify(json, null, 2)};\n`,
    );
    return path;
  });
  const tsc = join(here, 'node_modules', 'typescript', 'bin', 'tsc');
  try {
    execFileSync(
      process.execPath,
      [tsc, '--noEmit', '--strict', '--skipLibCheck', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', ...sources],
      { cwd: here, stdio: 'pipe' },
    );
  } catch (e) {
    console.error(String(e.stdout) + String(e.stderr));
    process.exit(1);
  }
  console.log(`${files.length} dashboards match @grafana/schema's Dashboard type: ${files.join(', ')}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
