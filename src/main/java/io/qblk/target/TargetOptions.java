package io.qblk.target;

import io.qblk.io.AioMode;
import io.qblk.io.CacheMode;
import io.qblk.qcow2.BackingPolicy;
import io.qblk.qcow2.DiscardMode;
import io.qblk.qcow2.MetadataWrite;
import java.util.Objects;

/**
 * How {@link TargetOpener} opens a target.
 *
 * @param format   qcow2, raw or null; {@code null} probes the file ({@link ImageFormat#probe})
 * @param readOnly refuse writes; the file is opened read-only
 * @param fileIo   syscalls, or the caller's io_uring (ublk queues)
 * @param metadata when qcow2 metadata reaches the file (raw has none)
 * @param backing  which backing files a qcow2 header may name (the name is untrusted input)
 * @param cache    page-cache use of the image file (qemu's -t; NONE: O_DIRECT where aligned, on the caller's ring too)
 * @param aio      how those files' I/O is issued (qemu's -i)
 * @param nullSize the size of a {@link ImageFormat#NULL} target
 * @param discard  whether a qcow2 image's freed clusters are punched out of the file (qemu's discard=; default unmap)
 */
public record TargetOptions(ImageFormat format, boolean readOnly, FileIo fileIo, MetadataWrite metadata,
                            BackingPolicy backing, CacheMode cache, AioMode aio, long nullSize, DiscardMode discard) {
    public TargetOptions {
        Objects.requireNonNull(fileIo, "fileIo");
        Objects.requireNonNull(metadata, "metadata");
        Objects.requireNonNull(backing, "backing");
        Objects.requireNonNull(cache, "cache");
        Objects.requireNonNull(aio, "aio");
        Objects.requireNonNull(discard, "discard");
        if (fileIo.onCallerRing() && aio != AioMode.POSIX)
            throw new IllegalArgumentException("the aio mode applies to syscall file I/O only, not to the caller's ring");
    }

    /** Read-write, syscalls, metadata write-back, regular backing files only, page cache, probe the format. */
    public static TargetOptions defaults() {
        return new TargetOptions(null, false, FileIo.SYSCALLS, MetadataWrite.WRITEBACK, BackingPolicy.REGULAR_FILES,
                CacheMode.WRITEBACK, AioMode.POSIX, 0, DiscardMode.UNMAP);
    }

    public TargetOptions withFormat(ImageFormat f) { return new TargetOptions(f, readOnly, fileIo, metadata, backing, cache, aio, nullSize, discard); }
    public TargetOptions withReadOnly(boolean ro) { return new TargetOptions(format, ro, fileIo, metadata, backing, cache, aio, nullSize, discard); }
    public TargetOptions withFileIo(FileIo io) { return new TargetOptions(format, readOnly, io, metadata, backing, cache, aio, nullSize, discard); }
    public TargetOptions withMetadata(MetadataWrite m) { return new TargetOptions(format, readOnly, fileIo, m, backing, cache, aio, nullSize, discard); }
    public TargetOptions withBacking(BackingPolicy b) { return new TargetOptions(format, readOnly, fileIo, metadata, b, cache, aio, nullSize, discard); }
    public TargetOptions withCache(CacheMode c) { return new TargetOptions(format, readOnly, fileIo, metadata, backing, c, aio, nullSize, discard); }
    public TargetOptions withAio(AioMode a) { return new TargetOptions(format, readOnly, fileIo, metadata, backing, cache, a, nullSize, discard); }
    public TargetOptions withDiscard(DiscardMode d) { return new TargetOptions(format, readOnly, fileIo, metadata, backing, cache, aio, nullSize, d); }
    public TargetOptions withNullSize(long s) { return new TargetOptions(format, readOnly, fileIo, metadata, backing, cache, aio, s, discard); }
}
