package io.qblk.testing;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;

/**
 * The images a power loss may leave, kept up to date from a {@link RecordingBackend}'s events:
 * the durable image (every event that completed before a completed datasync was submitted) plus
 * the events still in flight. {@link #crashImage} picks any subset of those, in any order, a write
 * possibly landing only in part (whole 512-byte sectors). The durable part is folded as barriers
 * complete, so memory stays bounded by what is in flight.
 */
public final class PowerCut {
    private final MemoryBackend durable;
    private final List<IoEvent> pending = new ArrayList<>();

    /** {@code base}: the image when recording starts, taken as durable. */
    public PowerCut(byte[] base) {
        this.durable = new MemoryBackend(base);
    }

    /** The sink for {@link RecordingBackend#RecordingBackend(io.qblk.io.IoBackend, java.util.function.Consumer)}. */
    public synchronized void add(IoEvent e) {
        if (!e.isSync()) {
            pending.add(e);
            return;
        }
        try {
            for (var it = pending.iterator(); it.hasNext(); ) {
                IoEvent w = it.next();
                if (w.complete() >= e.submit()) continue; // still in flight when the barrier was asked for
                w.applyTo(durable);
                it.remove();
            }
        } catch (IOException ex) {
            throw new UncheckedIOException(ex);
        }
    }

    public synchronized int pendingEvents() {
        return pending.size();
    }

    /** The file after a power loss now: the durable image plus a random subset of the in-flight events, in random order. */
    public synchronized byte[] crashImage(Random r) {
        List<IoEvent> ws = new ArrayList<>(pending);
        Collections.shuffle(ws, r);
        MemoryBackend out = new MemoryBackend(durable.snapshot());
        try {
            for (IoEvent w : ws) {
                if (!r.nextBoolean()) continue;
                if (w.kind() == IoEvent.Kind.WRITE && r.nextInt(4) == 0) {
                    boolean[] keep = new boolean[w.sectors()];
                    int upTo = r.nextInt(keep.length + 1); // a prefix of whole sectors
                    for (int s = 0; s < upTo; s++) keep[s] = true;
                    if (upTo > 0) w.applySectors(out, keep);
                    if (w.offset() + w.length() > out.size()) out.truncate(w.offset() + w.length()); // the size change may land alone
                } else w.applyTo(out);
            }
        } catch (IOException ex) {
            throw new UncheckedIOException(ex);
        }
        return out.snapshot();
    }
}
