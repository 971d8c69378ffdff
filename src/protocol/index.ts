/** Pure L2TPv3 protocol layer: codec and receive sequencing. No Node APIs, no I/O. */
export * from './constants.js';
export * from './encode.js';
export * from './decode.js';
export * from './sequence.js';
