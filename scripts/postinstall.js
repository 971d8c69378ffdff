#!/usr/bin/env node
// After `npm install -g`: link the bash completion where bash-completion finds it,
// <npm prefix>/share/bash-completion/completions/l2tpctl. bash-completion 2.12 and later look
// there for a command in <prefix>/bin; 2.11 (Debian 12) looks in $XDG_DATA_DIRS, which holds
// /usr/local/share and /usr/share, npm's usual prefixes. (npm links the man pages itself, from
// package.json's "man".) A local install (npm ci in a checkout) does nothing; a failure is
// reported and does not fail the install.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

if (process.env.npm_config_global === 'true' && process.env.npm_config_prefix) {
  const dir = path.join(process.env.npm_config_prefix, 'share', 'bash-completion', 'completions');
  const link = path.join(dir, 'l2tpctl');
  const target = path.join(__dirname, '..', 'completion', 'l2tpctl.bash');
  try {
    fs.mkdirSync(dir, { recursive: true });
    fs.rmSync(link, { force: true });
    fs.symlinkSync(target, link);
  } catch (err) {
    console.warn(`l2tpd: bash completion not installed (${link}: ${err.message}); source ${target} instead`);
  }
}
