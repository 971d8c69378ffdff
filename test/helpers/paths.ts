import path from 'node:path';

/** The repository root (this checkout). */
export const ROOT = path.resolve(__dirname, '..', '..');
