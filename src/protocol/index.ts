/** Pure L2TPv3 protocol layer: codec, receive sequencing, control messages, Hello. No Node APIs, no I/O. */
export * from './constants.js';
export * from './encode.js';
export * from './decode.js';
export * from './encap.js';
export * from './sequence.js';
export * from './control.js';
export * from './hello.js';
