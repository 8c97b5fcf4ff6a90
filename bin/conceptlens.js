#!/usr/bin/env node
import('../dist/ts/cli/main.js').then((m) => m.main(process.argv)).catch((e) => {
  console.error(`conceptlens: ${e instanceof Error ? e.message : e}`);
  process.exit(1);
});
