package io.qblk.cli;

import io.qblk.io.AioMode;
import io.qblk.io.CacheMode;
import io.qblk.io.DirectIoBackend;
import io.qblk.io.FileBackends;
import io.qblk.io.IoBackend;
import io.qblk.qcow2.MetadataWrite;
import io.qblk.qcow2.OpenOptions;
import io.qblk.qcow2.Qcow2Image;
import java.io.Closeable;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;

/** What io and bench need from an image, for a qcow2 image (through the engine) or a raw file. */
public interface ImageHandle extends Closeable {
    long virtualSize() throws IOException;
    void read(long offset, MemorySegment dst) throws IOException;
    void write(long offset, MemorySegment src) throws IOException;
    void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException;
    void discard(long offset, long length) throws IOException;
    void flush() throws IOException;
    @Override void close() throws IOException;

    static ImageHandle open(Path path, ImageFormat format, boolean readOnly) throws IOException {
        return open(path, format, readOnly, CacheMode.WRITEBACK, AioMode.POSIX);
    }

    /** Opens the image with the file's page-cache use and I/O method chosen (qemu's -t and -i). */
    static ImageHandle open(Path path, ImageFormat format, boolean readOnly, CacheMode cache, AioMode aio) throws IOException {
        return open(path, format, readOnly, cache, aio, MetadataWrite.WRITEBACK);
    }

    /** Also with the qcow2 metadata write mode (raw has no metadata). */
    static ImageHandle open(Path path, ImageFormat format, boolean readOnly, CacheMode cache, AioMode aio,
                            MetadataWrite metadata) throws IOException {
        if (format == ImageFormat.QCOW2) {
            return new Qcow2Handle(Images.openQcow2(path, OpenOptions.defaults().withReadOnly(readOnly).withCacheMode(cache)
                    .withAio(aio).withMetadataWrite(metadata)));
        }
        return new RawHandle(FileBackends.open(path, readOnly, cache, aio));
    }

    /** Null while O_DIRECT is in use or was not asked for; otherwise why requests stay buffered. */
    default String directDisabledReason() {
        return null;
    }

    record Qcow2Handle(Qcow2Image image) implements ImageHandle {
        public long virtualSize() { return image.virtualSize(); }
        public void read(long o, MemorySegment d) throws IOException { image.read(o, d); }
        public void write(long o, MemorySegment s) throws IOException { image.write(o, s); }
        public void writeZeroes(long o, long l, boolean u) throws IOException { image.writeZeroes(o, l, u); }
        public void discard(long o, long l) throws IOException { image.discard(o, l); }
        public void flush() throws IOException { image.flush(); }
        public void close() throws IOException { image.close(); }
        public String directDisabledReason() { return image.directDisabledReason(); }
    }

    record RawHandle(IoBackend file) implements ImageHandle {
        public long virtualSize() throws IOException { return file.size(); }
        public void read(long o, MemorySegment d) throws IOException { file.read(o, d); }
        public void write(long o, MemorySegment s) throws IOException {
            if (file.readOnly()) throw new IOException("image is read-only");
            file.write(o, s);
        }
        public void writeZeroes(long o, long l, boolean u) throws IOException {
            if (file.readOnly()) throw new IOException("image is read-only");
            if (u) { file.punchHole(o, l); return; }
            try (Arena a = Arena.ofConfined()) {
                long chunk = Math.min(l, 1 << 20);
                MemorySegment z = a.allocate(Math.max(chunk, 1), 4096);
                for (long p = 0; p < l; p += chunk) file.write(o + p, z.asSlice(0, Math.min(chunk, l - p)));
            }
        }
        public void discard(long o, long l) throws IOException {
            if (file.readOnly()) throw new IOException("image is read-only");
            file.punchHole(o, l);
        }
        public void flush() throws IOException { if (!file.readOnly()) file.datasync(); }
        public void close() throws IOException { file.close(); }
        public String directDisabledReason() { return file instanceof DirectIoBackend d ? d.directDisabledReason() : null; }
    }
}
