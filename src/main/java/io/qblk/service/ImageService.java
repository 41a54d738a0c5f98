package io.qblk.service;

import io.qblk.io.PosixFileBackend;
import io.qblk.target.BlockTarget;
import io.qblk.target.TargetOpener;
import io.qblk.target.NullTarget;
import io.qblk.target.RawTarget;
import jakarta.enterprise.context.ApplicationScoped;
import jakarta.inject.Inject;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

/** Creates, inspects, checks and opens images. Paths reaching here are already vetted by {@link ImagePaths}. */
@ApplicationScoped
public class ImageService {

    /** Backing files named inside images obey the same directory rules as API paths. */
    @Inject
    ImagePaths paths;

    public enum Format { QCOW2, RAW }

    public enum RepairMode { NONE, LEAKS, ALL }

    public void create(Path path, Format format, long size, Integer clusterSize) throws IOException {
        if (size <= 0 || size % 512 != 0) throw ApiException.badRequest("size must be a positive multiple of 512 bytes, got " + size);
        switch (format) {
            case QCOW2 -> Qcow2Support.create(path, size, clusterSize);
            case RAW -> {
                if (clusterSize != null) throw ApiException.badRequest("clusterSize only applies to qcow2 images");
                try (PosixFileBackend f = PosixFileBackend.open(path, false, true)) {
                    if (f.size() != 0) throw ApiException.conflict(path + ": already exists");
                    f.truncate(size);
                    f.datasync();
                }
            }
        }
    }

    /** qemu-img info style description of an image. */
    public Object info(Path path) throws IOException {
        Format f = detect(path);
        if (f == Format.QCOW2) return json(Qcow2Support.info(path, paths.backingPolicy()));
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("filename", path.toString());
        m.put("format", "raw");
        m.put("virtualSize", Files.size(path));
        return m;
    }

    public Object check(Path path, RepairMode mode) throws IOException {
        if (detect(path) != Format.QCOW2) throw ApiException.badRequest(path + ": only qcow2 images can be checked (this one is raw)");
        return json(Qcow2Support.check(path, mode.name().toLowerCase(Locale.ROOT), paths.backingPolicy()));
    }

    /** Opens the target a device serves; creates the image first when it is missing and createSize > 0. */
    public BlockTarget open(DeviceSpec spec) throws IOException {
        if (spec.target() == TargetType.NULL) return new NullTarget(spec.createSize());
        Path image = spec.image();
        if (!Files.exists(image)) {
            if (spec.createSize() == 0) throw new java.nio.file.NoSuchFileException(image.toString(), null, "no such file (set create-size to create it)");
            create(image, spec.target() == TargetType.QCOW2 ? Format.QCOW2 : Format.RAW, spec.createSize(), null);
        }
        if (spec.target() == TargetType.QCOW2) {
            if (detect(image) != Format.QCOW2) throw ApiException.unprocessable(image + ": not a qcow2 image (use target raw for raw files)");
            return Qcow2Support.open(image, spec.readOnly(), paths.backingPolicy(), onQueueRing(spec));
        }
        return new RawTarget(onQueueRing(spec) ? io.qblk.io.FileBackends.openOnCallerRing(image, spec.readOnly(), TargetOpener.FileIo.forUblk().ringMinBytes(),
                        io.qblk.ublk.UblkExport.defaultCacheMode())
                : PosixFileBackend.open(image, spec.readOnly()));
    }

    /**
     * A ublk device's file I/O goes through the io_uring of the queue whose tag asks (the queue's
     * own ring; other threads, e.g. flush at shutdown, use plain syscalls on the same descriptor).
     */
    private static boolean onQueueRing(DeviceSpec spec) {
        return spec.frontend() == FrontendType.UBLK;
    }

    private static final com.fasterxml.jackson.databind.ObjectMapper JSON = new com.fasterxml.jackson.databind.ObjectMapper();

    private static Object json(Object o) throws IOException {
        return o instanceof String s ? JSON.readTree(s) : o;
    }

    /** QCOW2 when the file starts with the qcow2 magic, RAW otherwise. */
    public static Format detect(Path path) throws IOException {
        try (var in = Files.newInputStream(path)) {
            byte[] b = in.readNBytes(4);
            return b.length == 4 && b[0] == 'Q' && b[1] == 'F' && b[2] == 'I' && (b[3] & 0xff) == 0xfb ? Format.QCOW2 : Format.RAW;
        }
    }
}
