package io.qblk.target;

import io.qblk.io.IoBackend;
import io.qblk.io.PosixFileBackend;
import io.qblk.qcow2.BackingPolicy;
import io.qblk.qcow2.CheckReport;
import io.qblk.qcow2.OpenOptions;
import io.qblk.qcow2.Qcow2Exception;
import io.qblk.qcow2.Qcow2Header;
import io.qblk.qcow2.Qcow2Image;
import io.qblk.qcow2.RepairMode;
import io.qblk.uring.FileBackends;
import java.io.IOException;
import java.nio.file.Path;
import java.util.function.Consumer;

/**
 * The one way qblk opens what it serves or inspects: an image file as qcow2 or raw, or a null
 * device of a given size. Used by the CLI ({@code export}, {@code ublk export/recover}, {@code io},
 * {@code bench}, {@code info}, {@code check}, {@code map}) and by the service (devices, info,
 * check, recover), each passing its {@link TargetOptions} (its backing policy among them).
 */
public final class TargetOpener {
    private TargetOpener() {}

    /** Opens {@code file} (null for the null target) as {@code options} say. */
    public static BlockTarget open(Path file, TargetOptions options) throws IOException {
        ImageFormat format = options.format() != null ? options.format() : ImageFormat.probe(file);
        return switch (format) {
            case NULL -> new NullTarget(options.nullSize());
            case RAW -> rawTarget(openFile(file, options));
            case QCOW2 -> {
                if (!options.fileIo().onCallerRing()) yield new Qcow2Target(dataReachable(file, openImage(file, options)));
                // Opening (header, tables, and the repair of a dirty image left by a crash) runs here on
                // an unbound thread, so it uses syscalls and is complete before any queue serves I/O;
                // afterwards every queue's tags reach the file through their own ring.
                IoBackend f = openFile(file, options);
                try {
                    yield new Qcow2Target(dataReachable(file, named(file, () -> Qcow2Image.open(f, engineOptions(options), file))), f);
                } catch (IOException | RuntimeException e) {
                    f.close();
                    throw e;
                }
            }
        };
    }

    /** A target serves guest data: an image whose data the engine cannot reach is refused here, at open. */
    private static Qcow2Image dataReachable(Path file, Qcow2Image img) throws IOException {
        String why = img.ioRefusal();
        if (why == null) return img;
        img.close();
        throw new Qcow2Exception(Qcow2Exception.Kind.UNSUPPORTED, file + ": " + why);
    }

    /** Where the guest data of {@code img} (opened from {@code file}) lives: its external data file, named relative to {@code file} as qemu names it, or {@code file} itself. */
    public static Path dataFilePath(Path file, Qcow2Image img) throws IOException {
        String dataFile = img.info().dataFile();
        if (dataFile == null) return file;
        return file.getParent() == null ? Path.of(dataFile) : file.getParent().resolve(dataFile);
    }

    /**
     * Opens {@code file} as a qcow2 image for the engine's own operations (info, check, map),
     * with syscall file I/O; a format error names the file.
     */
    public static Qcow2Image openImage(Path file, TargetOptions options) throws IOException {
        if (options.fileIo().onCallerRing()) throw new IllegalArgumentException("openImage uses syscall file I/O");
        Qcow2Image img = named(file, () -> Qcow2Image.open(file, engineOptions(options)));
        if (options.backing() != BackingPolicy.NOT_OPENED) {
            // as qemu, which opens an external data file with the image (all but info): it must be there
            Path data = dataFilePath(file, img);
            if (data != file && !java.nio.file.Files.exists(data)) {
                img.close();
                throw new Qcow2Exception(Qcow2Exception.Kind.NOT_FOUND, "Could not open '" + file + "': Could not open '" + data + "': No such file or directory");
            }
        }
        return img;
    }

    /**
     * Opens {@code file} to resume serving it after its server died (kill -9, crash): like
     * {@link #open}, and for qcow2 then a full check with repair (leaks and refcount errors) before
     * anything is served. A dirty image (dirty bit set) is already repaired by the engine while
     * opening; an image qblk was writing when killed carries no dirty bit but may hold leaked
     * clusters (allocated, not yet referenced), which this reclaims. {@code log} receives one line
     * saying what was found and repaired.
     */
    public static BlockTarget openForRecovery(Path file, TargetOptions options, Consumer<String> log) throws IOException {
        ImageFormat format = options.format() != null ? options.format() : ImageFormat.probe(file);
        options = options.withFormat(format);
        if (format != ImageFormat.QCOW2 || options.readOnly()) return open(file, options);
        boolean dirty;
        try (PosixFileBackend f = PosixFileBackend.open(file, true)) {
            dirty = Qcow2Header.dirtyBitSet(f);
        }
        BlockTarget t = open(file, options);
        try {
            Qcow2Image image = ((Qcow2Target) t).image();
            CheckReport r = image.check(RepairMode.ALL);
            if (r.corruptions() > 0 || r.checkErrors() > 0)
                throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, file + ": " + r.corruptions() + " corruption(s) and "
                        + r.checkErrors() + " check error(s) remain after repair; not serving it");
            image.flush();
            // a lazy-refcounts image written through sets the bit again for its own session (ordering.md L1)
            boolean stillDirty = image.info().dirtyFlag() && !image.lazyRefcountsActive();
            log.accept(file + ": reopened after its server died: dirty bit " + (dirty ? "was set, repaired while opening" : "was clear")
                    + (stillDirty ? " (STILL SET)" : "") + "; check repaired " + r.leaksFixed() + " leaked cluster(s) and "
                    + r.corruptionsFixed() + " refcount error(s) before serving");
            if (stillDirty) throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, file + ": dirty bit still set after repair; not serving it");
            return t;
        } catch (IOException | RuntimeException e) {
            t.close();
            throw e;
        }
    }

    /** A raw target on {@code f}; {@code f} is closed when the target cannot be made. */
    static BlockTarget rawTarget(IoBackend f) throws IOException {
        try {
            return new RawTarget(f);
        } catch (IOException | RuntimeException e) {
            f.close();
            throw e;
        }
    }

    private static IoBackend openFile(Path file, TargetOptions o) throws IOException {
        if (file == null) throw new IllegalArgumentException("missing FILE (only the null target has none)");
        return o.fileIo().onCallerRing() ? FileBackends.openOnCallerRing(file, o.readOnly(), o.fileIo().ringMinBytes(), o.cache())
                : FileBackends.open(file, o.readOnly(), o.cache(), o.aio());
    }

    private static OpenOptions engineOptions(TargetOptions o) {
        return OpenOptions.defaults().withReadOnly(o.readOnly()).withBackingPolicy(o.backing())
                .withMetadataWrite(o.metadata()).withCacheMode(o.cache()).withAio(o.aio()).withDiscard(o.discard());
    }

    private interface ImageOpen {
        Qcow2Image open() throws IOException;
    }

    /** Format errors keep their kind and name the file. */
    private static Qcow2Image named(Path file, ImageOpen open) throws IOException {
        try {
            return open.open();
        } catch (Qcow2Exception e) {
            String m = e.getMessage() == null ? "" : e.getMessage();
            if (m.startsWith(file.toString()) || m.startsWith("Could not open '")) throw e;
            throw new Qcow2Exception(e.kind(), file + ": " + m, e);
        }
    }
}
