#!/usr/bin/env node
import { main } from './main.js';

// main reports every failure itself and resolves to the exit code; a rejection would be a bug, left to
// Node's unhandled-rejection crash (stack trace, exit code 1)
void main(process.argv).then((code) => {
  process.exitCode = code;
});
