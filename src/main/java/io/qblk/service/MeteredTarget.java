package io.qblk.service;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import io.qblk.target.BlockTarget;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A {@link BlockTarget} decorator that records, per device and operation, the number of requests and
 * their latency ({@code qblk_io_seconds}, a histogram), bytes moved ({@code qblk_io_bytes_total}),
 * failures ({@code qblk_io_errors_total}) and requests in progress ({@code qblk_io_inflight}).
 *
 * <p>It also counts in-flight requests so a device can be drained: {@link #drain(long)} waits until
 * none is running, and {@link #refuseNew()} makes later calls fail with an I/O error.
 */
public final class MeteredTarget implements BlockTarget {
    public enum Op { READ, WRITE, FLUSH, DISCARD, WRITE_ZEROES, BLOCK_STATUS }

    private final BlockTarget inner;
    private final MeterRegistry registry;
    private final Timer[] timers = new Timer[Op.values().length];
    private final Counter[] bytes = new Counter[Op.values().length];
    private final Counter[] errors = new Counter[Op.values().length];
    private final List<Meter> meters = new ArrayList<>();
    private final AtomicInteger inflight = new AtomicInteger();
    private volatile boolean refusing;

    public MeteredTarget(String device, BlockTarget inner, MeterRegistry registry) {
        this.inner = inner;
        this.registry = registry;
        for (Op op : Op.values()) {
            String tag = op.name().toLowerCase(java.util.Locale.ROOT);
            timers[op.ordinal()] = add(Timer.builder("qblk.io").description("Block requests served, by device and operation")
                    .tags("device", device, "op", tag).publishPercentileHistogram().register(registry));
            bytes[op.ordinal()] = add(Counter.builder("qblk.io.bytes").description("Bytes covered by requests")
                    .baseUnit("bytes").tags("device", device, "op", tag).register(registry));
            errors[op.ordinal()] = add(Counter.builder("qblk.io.errors").description("Requests that failed")
                    .tags("device", device, "op", tag).register(registry));
        }
        add(Gauge.builder("qblk.io.inflight", inflight, AtomicInteger::get).description("Requests in progress")
                .tags("device", device).register(registry));
        if (inner instanceof io.qblk.target.Qcow2Target q) registerEngineMeters(device, q.image().stats());
    }

    /** The qcow2 engine's own work: metadata cache hits/misses, cluster allocations, flushes, datasyncs. */
    private void registerEngineMeters(String device, io.qblk.qcow2.EngineStats s) {
        add(FunctionCounter.builder("qblk.engine.cache.hits", s, io.qblk.qcow2.EngineStats::cacheHits)
                .description("L2 lookups answered from the metadata cache").tags("device", device).register(registry));
        add(FunctionCounter.builder("qblk.engine.cache.misses", s, io.qblk.qcow2.EngineStats::cacheMisses)
                .description("L2 tables and refcount blocks read from the image").tags("device", device).register(registry));
        add(FunctionCounter.builder("qblk.engine.allocations", s, io.qblk.qcow2.EngineStats::allocations)
                .description("Host clusters allocated").tags("device", device).register(registry));
        add(FunctionCounter.builder("qblk.engine.flushes", s, io.qblk.qcow2.EngineStats::flushes)
                .description("Metadata write-backs (flush requests)").tags("device", device).register(registry));
        add(FunctionCounter.builder("qblk.engine.datasyncs", s, io.qblk.qcow2.EngineStats::datasyncs)
                .description("fdatasync calls issued by the engine").tags("device", device).register(registry));
    }

    private <M extends Meter> M add(M m) {
        meters.add(m);
        return m;
    }

    public BlockTarget inner() { return inner; }

    public int inflight() { return inflight.get(); }

    /** Later requests fail with an I/O error instead of reaching the target. */
    public void refuseNew() { refusing = true; }

    /** Waits until no request is in progress; false if some still are after {@code timeoutMillis}. */
    public boolean drain(long timeoutMillis) throws InterruptedException {
        long end = System.nanoTime() + timeoutMillis * 1_000_000;
        while (inflight.get() > 0) {
            if (System.nanoTime() > end) return false;
            Thread.sleep(1);
        }
        return true;
    }

    /** Unregisters this device's meters. */
    public void removeMeters() {
        meters.forEach(registry::remove);
    }

    @FunctionalInterface
    private interface Io<T> { T run() throws IOException; }

    private <T> T measure(Op op, long length, Io<T> io) throws IOException {
        if (refusing) {
            errors[op.ordinal()].increment();
            throw new IOException("device is shutting down");
        }
        inflight.incrementAndGet();
        long start = System.nanoTime();
        try {
            T r = io.run();
            bytes[op.ordinal()].increment(length);
            return r;
        } catch (IOException | RuntimeException e) {
            errors[op.ordinal()].increment();
            throw e;
        } finally {
            timers[op.ordinal()].record(System.nanoTime() - start, java.util.concurrent.TimeUnit.NANOSECONDS);
            inflight.decrementAndGet();
        }
    }

    @Override public long size() { return inner.size(); }
    @Override public boolean readOnly() { return inner.readOnly(); }
    @Override public String writeRefusal() { return inner.writeRefusal(); }

    @Override
    public void read(long offset, MemorySegment dst) throws IOException {
        measure(Op.READ, dst.byteSize(), () -> { inner.read(offset, dst); return null; });
    }

    /**
     * A planned read or write (a ublk tag links it to its commit) is counted from the plan until its
     * release on the ring thread: in progress for {@link #drain}, then one request with its latency.
     * Should the planned I/O fail, the tag serves the request again through {@link #read}/{@link #write},
     * which counts it once more (a rare error path).
     */
    @Override
    public boolean planRead(long offset, MemorySegment dst, io.qblk.io.FilePlan plan) {
        long start = System.nanoTime();
        if (!enterPlan()) return false;
        return planned(Op.READ, inner.planRead(offset, dst, plan), dst.byteSize(), plan, start);
    }

    @Override
    public boolean planWrite(long offset, MemorySegment src, io.qblk.io.FilePlan plan) {
        long start = System.nanoTime();
        if (!enterPlan()) return false;
        return planned(Op.WRITE, inner.planWrite(offset, src, plan), src.byteSize(), plan, start);
    }

    /** A planned request's release: its latency, and no longer in progress. */
    private final io.qblk.io.FilePlan.Holder readDone = start -> planDone(Op.READ, start),
            writeDone = start -> planDone(Op.WRITE, start);

    // in progress before the target is asked (as measure() does), so a drain() that follows
    // refuseNew() waits for a plan that got past the check
    private boolean enterPlan() {
        if (refusing) return false; // the ordinary call refuses it, counted as an error
        inflight.incrementAndGet();
        return true;
    }

    private boolean planned(Op op, boolean planned, long length, io.qblk.io.FilePlan plan, long start) {
        if (!planned) {
            inflight.decrementAndGet();
            return false;
        }
        // bytes are counted at the plan (the ordinary path counts them on success; a planned I/O that
        // fails is served again through read/write and counted there too); the hold's token is the
        // start time
        bytes[op.ordinal()].increment(length);
        plan.holdAlso(op == Op.READ ? readDone : writeDone, start);
        return true;
    }

    private void planDone(Op op, long start) {
        timers[op.ordinal()].record(System.nanoTime() - start, java.util.concurrent.TimeUnit.NANOSECONDS);
        inflight.decrementAndGet();
    }

    @Override
    public void write(long offset, MemorySegment src, boolean fua) throws IOException {
        measure(Op.WRITE, src.byteSize(), () -> { inner.write(offset, src, fua); return null; });
    }

    @Override
    public void flush() throws IOException {
        measure(Op.FLUSH, 0, () -> { inner.flush(); return null; });
    }

    @Override
    public void discard(long offset, long length) throws IOException {
        measure(Op.DISCARD, length, () -> { inner.discard(offset, length); return null; });
    }

    @Override
    public void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException {
        measure(Op.WRITE_ZEROES, length, () -> { inner.writeZeroes(offset, length, mayUnmap); return null; });
    }

    @Override
    public List<Extent> blockStatus(long offset, long length) throws IOException {
        return measure(Op.BLOCK_STATUS, length, () -> inner.blockStatus(offset, length));
    }

    @Override
    public List<String> metaContexts() { return inner.metaContexts(); }

    @Override
    public List<Status> contextStatus(String context, long offset, long length) throws IOException {
        return measure(Op.BLOCK_STATUS, length, () -> inner.contextStatus(context, offset, length));
    }

    @Override
    public void close() throws IOException { inner.close(); }
}
