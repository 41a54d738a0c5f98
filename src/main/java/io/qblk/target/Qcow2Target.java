package io.qblk.target;

import io.qblk.qcow2.MapEntry;
import io.qblk.qcow2.Qcow2Image;
import java.io.Closeable;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

/** A qcow2 image served as a block device through the pure-Java engine. */
public final class Qcow2Target implements BlockTarget {
    private final Qcow2Image image;
    private final Closeable ownedFile;
    private final long size;

    public Qcow2Target(Qcow2Image image) {
        this(image, null);
    }

    /** For an image opened on a backend the image does not own: {@code ownedFile} is closed after the image. */
    public Qcow2Target(Qcow2Image image, Closeable ownedFile) {
        this.image = image;
        this.ownedFile = ownedFile;
        this.size = image.virtualSize() / 512 * 512;
    }

    public Qcow2Image image() { return image; }

    @Override public long size() { return size; }
    @Override public String directDisabledReason() { return image.directDisabledReason(); }
    @Override public String writeRefusal() { return image.writeRefusal(); }
    @Override public boolean readOnly() { return image.readOnly(); }
    @Override public void read(long offset, MemorySegment dst) throws IOException { image.read(offset, dst); }
    @Override public boolean planRead(long offset, MemorySegment dst, io.qblk.io.FilePlan plan) { return image.planRead(offset, dst, plan); }
    @Override public boolean planWrite(long offset, MemorySegment src, io.qblk.io.FilePlan plan) { return image.planWrite(offset, src, plan); }

    @Override
    public void write(long offset, MemorySegment src, boolean fua) throws IOException {
        image.write(offset, src);
        if (fua) image.flush();
    }

    @Override public void flush() throws IOException { image.flush(); }
    @Override public void discard(long offset, long length) throws IOException { image.discard(offset, length); }

    @Override
    public void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException {
        image.writeZeroes(offset, length, mayUnmap);
    }

    /** From {@link Qcow2Image#map}: hole = no data anywhere in the chain, zero = reads as zeroes. */
    @Override
    public List<Extent> blockStatus(long offset, long length) throws IOException {
        List<Extent> out = new ArrayList<>();
        for (MapEntry m : image.map(offset, length)) {
            boolean hole = !m.data();
            Extent e = new Extent(m.start(), m.length(), hole, m.zero());
            if (!out.isEmpty()) {
                Extent p = out.getLast();
                if (p.hole() == e.hole() && p.zero() == e.zero() && p.offset() + p.length() == e.offset()) {
                    out.set(out.size() - 1, new Extent(p.offset(), p.length() + e.length(), p.hole(), p.zero()));
                    continue;
                }
            }
            out.add(e);
        }
        return out;
    }

    @Override
    public List<String> metaContexts() {
        List<String> out = new ArrayList<>(List.of(ALLOCATION_DEPTH));
        for (String b : image.consistentBitmaps()) out.add(DIRTY_BITMAP + b);
        return out;
    }

    @Override
    public List<Status> contextStatus(String context, long offset, long length) throws IOException {
        List<Status> out = new ArrayList<>();
        if (context.equals(ALLOCATION_DEPTH)) {
            for (MapEntry m : image.map(offset, length)) add(out, new Status(m.start(), m.length(), m.present() ? m.depth() + 1 : 0));
            return out;
        }
        List<long[]> runs = context.startsWith(DIRTY_BITMAP) ? image.bitmapRuns(context.substring(DIRTY_BITMAP.length()), offset, length) : null;
        if (runs == null) throw new IOException("unknown metadata context " + context);
        for (long[] r : runs) out.add(new Status(r[0], r[1], (int) r[2]));
        return out;
    }

    private static void add(List<Status> out, Status s) {
        if (!out.isEmpty()) {
            Status p = out.getLast();
            if (p.flags() == s.flags() && p.offset() + p.length() == s.offset()) {
                out.set(out.size() - 1, new Status(p.offset(), p.length() + s.length(), p.flags()));
                return;
            }
        }
        out.add(s);
    }

    @Override
    public void close() throws IOException {
        try {
            image.close();
        } finally {
            if (ownedFile != null) ownedFile.close();
        }
    }
}
