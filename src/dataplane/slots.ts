import { SLOT_SIZE } from './layout.js';

/**
 * Free list of pool slots: an Int32Array stack, so taking and returning a slot never allocates.
 * Only the data-plane thread touches it.
 */
export class SlotAllocator {
  private readonly stack: Int32Array;
  private top: number;

  constructor(readonly slotCount: number) {
    this.stack = new Int32Array(slotCount);
    for (let i = 0; i < slotCount; i++) this.stack[i] = slotCount - 1 - i;
    this.top = slotCount;
  }

  get free(): number {
    return this.top;
  }

  /** A free slot index, or -1 when the pool is exhausted. */
  take(): number {
    return this.top > 0 ? this.stack[--this.top] : -1;
  }

  give(slot: number): void {
    this.stack[this.top++] = slot;
  }
}

export function slotOffset(slot: number): number {
  return slot * SLOT_SIZE;
}
