#!/usr/bin/env node
// The CLI: the library's commands plus the bench suites (which live outside the library).
Promise.all([import('../dist/ts/cli/main.js'), import('../dist/bench/cli.js')])
  .then(([cli, bench]) => cli.main(process.argv, [bench.registerBench]))
  .catch((e) => {
    console.error(`conceptlens: ${e instanceof Error ? e.message : e}`);
    process.exitCode = 1;
  });
