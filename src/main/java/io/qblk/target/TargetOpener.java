package io.qblk.target;

import io.qblk.io.AioMode;
import io.qblk.io.CacheMode;
import io.qblk.io.FileBackends;
import io.qblk.io.IoBackend;
import io.qblk.io.PosixFileBackend;
import io.qblk.qcow2.CheckReport;
import io.qblk.qcow2.MetadataWrite;
import io.qblk.qcow2.OpenOptions;
import io.qblk.qcow2.RepairMode;
import io.qblk.qcow2.Qcow2Image;
import io.qblk.uring.UringFileBackend;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.Locale;

/**
 * Opens what a frontend serves: an image file as qcow2 or raw, or a null device of a given size.
 * Shared by {@code qblk export} (NBD and ublk) and the service.
 */
public final class TargetOpener {
    private TargetOpener() {}

    /** Image format; {@link #AUTO} looks at the file's first bytes (qcow2 magic, else raw). */
    public enum Format {
        AUTO, QCOW2, RAW, NULL;

        public static Format parse(String s) {
            try {
                return valueOf(s.trim().toUpperCase(Locale.ROOT));
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("unknown format '" + s + "' (expected qcow2, raw or null)");
            }
        }

        @Override
        public String toString() {
            return name().toLowerCase(Locale.ROOT);
        }
    }

    /** How a raw or qcow2 target does its file I/O. */
    public enum FileIo {
        /** pread/pwrite/fdatasync on the calling thread ({@link PosixFileBackend}): NBD, tools. */
        SYSCALLS,
        /**
         * Through the io_uring bound to the calling thread ({@link UringFileBackend#openForCallerRing}):
         * under ublk that is the ring of the queue whose tag runs the request; unbound threads use syscalls.
         */
        CALLER_RING,
        /**
         * Reads and writes of at least {@link #LARGE} bytes as {@link #CALLER_RING}; smaller ones,
         * fdatasync and fallocate with syscalls on the tag's thread: the ublk default, measured in the
         * VM (docs/ublk.md: 4k random I/O 1.2-1.7x faster with syscalls, 512k sequential 1.3-1.5x
         * faster on the ring).
         */
        CALLER_RING_LARGE;

        /** The size from which {@link #CALLER_RING_LARGE} uses the ring. */
        public static final long LARGE = 128 << 10;

        /** Below this many bytes a read or write uses syscalls even on a thread with a ring bound. */
        public long ringMinBytes() {
            return switch (this) {
                case SYSCALLS -> Long.MAX_VALUE;
                case CALLER_RING -> 0;
                case CALLER_RING_LARGE -> LARGE;
            };
        }

        /** Whether file I/O follows the caller's ring (for some sizes at least). */
        public boolean onCallerRing() {
            return this != SYSCALLS;
        }

        /**
         * What ublk exports use: CALLER_RING when the queue's ring thread carries the tag threads
         * ({@link io.qblk.uring.VirtualCarrier}), else CALLER_RING_LARGE; or as QBLK_UBLK_FILE_IO says: {@code pread}
         * (SYSCALLS), {@code ring} (CALLER_RING, every size), {@code auto} (the default).
         */
        public static FileIo forUblk() {
            String v = System.getenv("QBLK_UBLK_FILE_IO");
            // auto: every operation on the ring when the tags run on it (nothing may block that thread)
            if (v == null || v.isEmpty() || v.equals("auto")) return io.qblk.uring.VirtualCarrier.available() ? CALLER_RING : CALLER_RING_LARGE;
            return switch (v) {
                case "pread" -> SYSCALLS;
                case "ring" -> CALLER_RING;
                default -> throw new IllegalArgumentException("QBLK_UBLK_FILE_IO=" + v + ": expected auto, ring or pread");
            };
        }
    }

    /** The qcow2 header magic "QFI\xfb". */
    public static final int QCOW2_MAGIC = 0x514649fb;

    /** Opens {@code file} in {@code format} with syscall I/O; a read-only target refuses writes. NULL needs {@link #openNull}. */
    public static BlockTarget open(Path file, Format format, boolean readOnly) throws IOException {
        return open(file, format, readOnly, FileIo.SYSCALLS);
    }

    /** Opens {@code file} in {@code format}, its file I/O done as {@code io} says; qcow2 metadata write-back. */
    public static BlockTarget open(Path file, Format format, boolean readOnly, FileIo io) throws IOException {
        return open(file, format, readOnly, io, MetadataWrite.WRITEBACK);
    }

    /**
     * Opens {@code file} in {@code format}, its file I/O done as {@code io} says; a qcow2 image keeps
     * its changed metadata as {@code metadata} says (raw has none: every completed write is in the file).
     */
    public static BlockTarget open(Path file, Format format, boolean readOnly, FileIo io, MetadataWrite metadata) throws IOException {
        return open(file, format, readOnly, io, metadata, CacheMode.WRITEBACK);
    }

    /** As above, the image file opened with page-cache use {@code cache} (NONE: O_DIRECT where aligned). */
    public static BlockTarget open(Path file, Format format, boolean readOnly, FileIo io, MetadataWrite metadata,
                                   CacheMode cache) throws IOException {
        if (format == Format.NULL) throw new IllegalArgumentException("the null target has no file; use a size");
        if (format == Format.AUTO) format = detect(file);
        return switch (format) {
            case RAW -> {
                IoBackend f = io.onCallerRing() ? FileBackends.openOnCallerRing(file, readOnly, io.ringMinBytes(), cache)
                        : FileBackends.open(file, readOnly, cache, AioMode.POSIX);
                try {
                    yield new RawTarget(f);
                } catch (IOException | RuntimeException e) {
                    f.close();
                    throw e;
                }
            }
            case QCOW2 -> {
                OpenOptions options = OpenOptions.defaults().withReadOnly(readOnly).withMetadataWrite(metadata).withCacheMode(cache);
                yield io.onCallerRing() ? openQcow2OnCallerRing(file, options, io.ringMinBytes()) : new Qcow2Target(Qcow2Image.open(file, options));
            }
            default -> throw new IllegalStateException(format.toString());
        };
    }

    /**
     * Opens {@code file} to resume serving it after its server died (kill -9, crash): like
     * {@link #open}, and for qcow2 then a full check with repair (leaks and refcount errors) before
     * anything is served. A dirty image (dirty bit set) is already repaired by the engine while
     * opening; an image qblk was writing when killed carries no dirty bit but may hold leaked
     * clusters (allocated, not yet referenced), which this reclaims. {@code log} receives one line
     * saying what was found and repaired.
     */
    public static BlockTarget openForRecovery(Path file, Format format, FileIo io, MetadataWrite metadata,
                                              java.util.function.Consumer<String> log) throws IOException {
        return openForRecovery(file, format, io, metadata, CacheMode.WRITEBACK, log);
    }

    /** {@link #openForRecovery(Path, Format, FileIo, MetadataWrite, java.util.function.Consumer)} with page-cache use {@code cache}. */
    public static BlockTarget openForRecovery(Path file, Format format, FileIo io, MetadataWrite metadata, CacheMode cache,
                                              java.util.function.Consumer<String> log) throws IOException {
        if (format == Format.AUTO) format = detect(file);
        if (format != Format.QCOW2) return open(file, format, false, io, MetadataWrite.WRITEBACK, cache);
        boolean dirty = dirtyBitSet(file);
        BlockTarget t = open(file, format, false, io, metadata, cache);
        try {
            Qcow2Image image = ((Qcow2Target) t).image();
            CheckReport r = image.check(RepairMode.ALL);
            if (r.corruptions() > 0 || r.checkErrors() > 0)
                throw new IOException(file + ": " + r.corruptions() + " corruption(s) and " + r.checkErrors()
                        + " check error(s) remain after repair; not serving it");
            image.flush();
            boolean stillDirty = image.info().dirtyFlag();
            log.accept(file + ": reopened after its server died: dirty bit " + (dirty ? "was set, repaired while opening" : "was clear")
                    + (stillDirty ? " (STILL SET)" : "") + "; check repaired " + r.leaksFixed() + " leaked cluster(s) and "
                    + r.corruptionsFixed() + " refcount error(s) before serving");
            if (stillDirty) throw new IOException(file + ": dirty bit still set after repair; not serving it");
            return t;
        } catch (IOException | RuntimeException e) {
            t.close();
            throw e;
        }
    }

    /** Whether a qcow2 v3 header has its dirty bit (incompatible feature bit 0) set. */
    static boolean dirtyBitSet(Path file) throws IOException {
        try (PosixFileBackend f = PosixFileBackend.open(file, true); Arena a = Arena.ofConfined()) {
            if (f.size() < 80) return false;
            MemorySegment h = a.allocate(80);
            f.read(0, h);
            ValueLayout.OfInt be32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
            if (h.get(be32, 0) != QCOW2_MAGIC || h.get(be32, 4) < 3) return false;
            long incompatible = h.get(ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN), 72);
            return (incompatible & 1) != 0;
        }
    }

    public static BlockTarget openNull(long size) {
        return new NullTarget(size);
    }

    /** QCOW2 when the file starts with the qcow2 magic, RAW otherwise. */
    public static Format detect(Path file) throws IOException {
        try (PosixFileBackend f = PosixFileBackend.open(file, true); Arena a = Arena.ofConfined()) {
            if (f.size() < 4) return Format.RAW;
            MemorySegment m = a.allocate(4);
            f.read(0, m);
            int magic = m.get(ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN), 0);
            return magic == QCOW2_MAGIC ? Format.QCOW2 : Format.RAW;
        }
    }

    /**
     * The engine on a caller-ring backend. Opening (header, tables, and the repair of a dirty image
     * left by a crash) runs here on an unbound thread, so it uses syscalls and is complete before any
     * queue serves I/O; afterwards every queue's tags reach the file through their own ring.
     */
    private static BlockTarget openQcow2OnCallerRing(Path file, OpenOptions options, long ringMinBytes) throws IOException {
        IoBackend f = FileBackends.openOnCallerRing(file, options.readOnly(), ringMinBytes, options.cacheMode());
        try {
            return new Qcow2Target(Qcow2Image.open(f, options, file), f);
        } catch (IOException | RuntimeException e) {
            f.close();
            throw e;
        }
    }
}
