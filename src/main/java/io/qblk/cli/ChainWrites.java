package io.qblk.cli;

import io.qblk.io.IoBackend;
import io.qblk.qcow2.HeaderRewrite;
import io.qblk.qcow2.MapEntry;
import io.qblk.qcow2.Qcow2Image;
import io.qblk.target.BlockTarget;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.function.LongConsumer;

/**
 * The writes of {@code commit} and of a safe {@code rebase}, in the order of docs/ordering.md rules
 * C1-C3, on images the caller opens: the commands open them from paths under their locks, the
 * crash-state explorer ({@code ChainCrashExplorer}) on recorded in-memory files. Neither changes
 * what FILE reads through its chain; a crash anywhere leaves FILE reading exactly as before.
 */
public final class ChainWrites {
    private ChainWrites() {}

    /** Opens one image of the chain (or BASE as a target); the method it is given to closes it. */
    @FunctionalInterface
    public interface Opener<T> {
        T open() throws IOException;
    }

    /** A step that opens, changes and closes an image itself. */
    @FunctionalInterface
    public interface Step {
        void run() throws IOException;
    }

    /**
     * Commit: what each image of {@code above} (FILE first, down to the image over BASE; each opened
     * without its backing file) holds itself is written into BASE, bottom-up so that a higher image's
     * data wins, and BASE is flushed (C1) and closed. Only then, when {@code emptyTop} is not null,
     * FILE is emptied by it ({@link #empty}, C2). {@code copied} gets the bytes copied so far.
     */
    public static void commit(Opener<BlockTarget> baseOpener, List<Opener<Qcow2Image>> above, Step emptyTop, LongConsumer copied) throws IOException {
        try (BlockTarget base = baseOpener.open()) {
            copyInto(base, above, copied);
            base.flush(); // C1: durable in BASE before FILE lets go of anything
        }
        if (emptyTop != null) emptyTop.run();
    }

    private static void copyInto(BlockTarget base, List<Opener<Qcow2Image>> above, LongConsumer copied) throws IOException {
        long[] done = {0};
        for (int i = above.size() - 1; i >= 0; i--) {
            try (Qcow2Image layer = above.get(i).open()) {
                ImageChain.ownRanges(layer, new ImageChain.RangeSink() {
                    @Override public void data(long offset, MemorySegment data) throws IOException {
                        base.write(offset, data, false);
                        copied.accept(done[0] += data.byteSize());
                    }
                    @Override public void zero(long offset, long length) throws IOException {
                        base.writeZeroes(offset, length, true);
                        copied.accept(done[0] += length);
                    }
                });
            }
        }
    }

    /** C2: FILE (open for writing, with its chain) gives up every cluster (a full discard, R4) and is flushed. */
    public static void empty(Qcow2Image top) throws IOException {
        top.deallocate(0, top.virtualSize());
        top.flush();
    }

    /**
     * Rebase of FILE ({@code file}) onto {@code newName} of format {@code newFormat} (both null: no
     * backing file). Safe mode ({@code withOldChain} not null: FILE opened for writing with its old
     * chain): every range FILE does not hold itself and reads differently through {@code newBacking}
     * (null: zeroes) is copied into FILE, per 64 KiB so that equal parts stay unallocated, and FILE is
     * flushed (C3); then the header names the new backing file (one sector, R11). {@code step} gets
     * FILE's virtual size after each 2 MiB step of the copy.
     */
    public static void rebase(IoBackend file, Opener<Qcow2Image> withOldChain, BlockTarget newBacking, String newName, String newFormat, LongConsumer step)
            throws IOException {
        if (withOldChain != null) {
            try (Qcow2Image img = withOldChain.open(); Arena a = Arena.ofConfined()) {
                long size = img.virtualSize();
                int chunk = ConvertCommand.CHUNK;
                MemorySegment oldBuf = a.allocate(chunk, 4096), newBuf = a.allocate(chunk, 4096);
                long newSize = newBacking == null ? 0 : newBacking.size();
                for (long pos = 0; pos < size; pos += chunk) {
                    for (MapEntry e : img.map(pos, Math.min(chunk, size - pos))) {
                        if (e.depth() == 0 && e.present()) continue; // FILE holds it itself
                        long off = e.start();
                        int n = (int) e.length();
                        MemorySegment o = oldBuf.asSlice(0, n), nw = newBuf.asSlice(0, n);
                        img.read(off, o);
                        nw.fill((byte) 0);
                        if (off < newSize) newBacking.read(off, nw.asSlice(0, Math.min(n, newSize - off)));
                        for (int s = 0; s < n; s += 65536) {
                            int len = Math.min(65536, n - s);
                            if (MemorySegment.mismatch(o, s, s + len, nw, s, s + len) >= 0) img.write(off + s, o.asSlice(s, len));
                        }
                    }
                    step.accept(size);
                }
                img.flush(); // C3 (R11): the copies are durable before the header names the new backing file
            }
        }
        HeaderRewrite.of(file).backing(newName, newFormat).write();
    }
}
