package io.qblk.service;

import io.qblk.io.CacheMode;
import io.qblk.io.Errno;
import io.qblk.io.ErrnoException;
import io.qblk.json.QemuJson;
import io.qblk.qcow2.CheckReport;
import io.qblk.qcow2.CreateOptions;
import io.qblk.qcow2.MetadataWrite;
import io.qblk.qcow2.Preallocation;
import io.qblk.qcow2.Qcow2Image;
import io.qblk.qcow2.RepairMode;
import io.qblk.target.BlockTarget;
import io.qblk.target.FileIo;
import io.qblk.target.ImageFormat;
import io.qblk.target.RawTarget;
import io.qblk.target.TargetOpener;
import io.qblk.target.TargetOptions;
import jakarta.enterprise.context.ApplicationScoped;
import jakarta.inject.Inject;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Consumer;

/**
 * Creates, inspects, checks and opens images: the service's only contact with the qcow2 engine,
 * through {@link TargetOpener} like the CLI. Paths reaching here are already vetted by {@link ImagePaths}.
 */
@ApplicationScoped
public class ImageService {

    /** Backing files named inside images obey the same directory rules as API paths. */
    @Inject
    ImagePaths paths;

    @Inject
    QblkConfig config;

    public void create(Path path, ImageFormat format, long size, Integer clusterSize) throws IOException {
        if (size <= 0 || size % 512 != 0) throw ApiException.badRequest("size must be a positive multiple of 512 bytes, got " + size);
        switch (format) {
            case QCOW2 -> {
                CreateOptions o = CreateOptions.defaults(size);
                if (clusterSize != null) o = o.withClusterSize(clusterSize);
                try {
                    o.validate();
                } catch (IllegalArgumentException e) {
                    throw ApiException.badRequest(e.getMessage());
                }
                Qcow2Image.create(path, o);
            }
            case RAW -> {
                if (clusterSize != null) throw ApiException.badRequest("clusterSize only applies to qcow2 images");
                createRaw(path, size);
            }
            case NULL -> throw ApiException.badRequest("the null format has no file to create");
        }
    }

    /** A new raw file of {@code size} bytes; a failed create (EFBIG, ENOSPC) leaves no file behind. */
    static void createRaw(Path path, long size) throws IOException {
        try {
            RawTarget.create(path, size, Preallocation.OFF);
        } catch (ErrnoException e) {
            if (e.errno() == Errno.EEXIST) throw ApiException.conflict(path.getFileName() + ": already exists");
            throw e;
        }
    }

    /** qemu-img info style description of an image. */
    public Object info(Path path) throws IOException {
        ImageFormat f = ImageFormat.probe(path);
        if (f == ImageFormat.QCOW2) {
            try (Qcow2Image image = TargetOpener.openImage(path, options(null).withReadOnly(true))) {
                return QemuJson.withBitmaps(QemuJson.info(image.info(), image.info().actualSize()), image.bitmaps());
            }
        }
        return QemuJson.rawInfo(path.toString(), Files.size(path), Files.size(path));
    }

    /** qemu-img check --output=json fields, plus "messages" and "clean". */
    public Object check(Path path, RepairMode mode) throws IOException {
        if (ImageFormat.probe(path) != ImageFormat.QCOW2)
            throw ApiException.badRequest(path + ": only qcow2 images can be checked (this one is raw)");
        try (Qcow2Image image = TargetOpener.openImage(path, options(ImageFormat.QCOW2).withReadOnly(mode == RepairMode.NONE))) {
            CheckReport report = image.check(mode);
            var tree = QemuJson.check(report);
            tree.put("clean", report.clean());
            var msgs = tree.putArray("messages");
            report.messages().forEach(msgs::add);
            return tree;
        }
    }

    /** Opens the target a device serves; creates the image first when it is missing and createSize > 0. */
    public BlockTarget open(DeviceSpec spec) throws IOException {
        return open(spec, false, null);
    }

    /**
     * Opens the target a device serves. With {@code recovering} (a device restarted after an unclean
     * stop) a qcow2 image is also checked and its leaks repaired before it is served
     * ({@link TargetOpener#openForRecovery}); {@code log} gets the one line saying what was repaired.
     */
    public BlockTarget open(DeviceSpec spec, boolean recovering, Consumer<String> log) throws IOException {
        TargetOptions o = deviceOptions(spec);
        if (spec.target() == ImageFormat.NULL) return TargetOpener.open(null, o);
        Path image = spec.image();
        if (!Files.exists(image)) {
            if (spec.createSize() == 0) throw new java.nio.file.NoSuchFileException(image.toString(), null, "no such file (set create-size to create it)");
            create(image, spec.target(), spec.createSize(), null);
        }
        return recovering ? TargetOpener.openForRecovery(image, o, log) : TargetOpener.open(image, o);
    }

    /**
     * A device's open options: the allowed-dirs backing policy; a ublk device's file I/O goes through
     * the io_uring of the queue whose tag asks (as {@code qblk.ublk.file-io} says) and its qcow2
     * metadata is written through (like {@code qblk export --ublk}), so every completed write
     * survives the service dying. The image's page-cache use is the device's {@code cache}, else
     * {@code qblk.ublk.cache} for ublk devices and writeback for NBD devices (as {@code qblk export}).
     */
    TargetOptions deviceOptions(DeviceSpec spec) {
        TargetOptions o = options(spec.target()).withReadOnly(spec.readOnly()).withNullSize(spec.createSize());
        if (spec.frontend() != FrontendType.UBLK) return spec.cache() == null ? o : o.withCache(spec.cache());
        return o.withFileIo(FileIo.forUblk(config.ublk().fileIo())).withMetadata(MetadataWrite.WRITETHROUGH)
                .withCache(spec.cache() != null ? spec.cache() : CacheMode.parse(config.ublk().cache()));
    }

    private TargetOptions options(ImageFormat format) {
        return TargetOptions.defaults().withFormat(format).withBacking(paths.backingPolicy())
                .withDiscard(io.qblk.qcow2.DiscardMode.parse(config.images().discard()));
    }
}
