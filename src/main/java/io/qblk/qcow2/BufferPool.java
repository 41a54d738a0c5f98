package io.qblk.qcow2;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicInteger;

/** Native, 4 KiB-aligned buffers of one size, reused across I/Os. */
final class BufferPool {
    private final long size;
    private final int keep;
    private final ConcurrentLinkedQueue<MemorySegment> free = new ConcurrentLinkedQueue<>();
    private final AtomicInteger kept = new AtomicInteger();

    BufferPool(long size, int keep) {
        this.size = size;
        this.keep = keep;
    }

    MemorySegment acquire() {
        MemorySegment s = free.poll();
        if (s != null) {
            kept.decrementAndGet();
            return s;
        }
        return Arena.ofAuto().allocate(size, 4096);
    }

    void release(MemorySegment s) {
        if (kept.incrementAndGet() <= keep) free.offer(s);
        else kept.decrementAndGet();
    }
}
