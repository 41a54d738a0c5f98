package io.qblk.service;

import io.qblk.qcow2.RepairMode;
import io.qblk.target.ImageFormat;
import io.qblk.util.Sizes;
import io.qblk.io.ImageLock;
import io.smallrye.common.annotation.RunOnVirtualThread;
import jakarta.inject.Inject;
import jakarta.ws.rs.Consumes;
import jakarta.ws.rs.GET;
import jakarta.ws.rs.POST;
import jakarta.ws.rs.Path;
import jakarta.ws.rs.Produces;
import jakarta.ws.rs.QueryParam;
import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.Response;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import org.eclipse.microprofile.openapi.annotations.Operation;

/** {@code /images}: create, inspect and check image files under the allowed directories. */
@Path("/images")
@Produces(MediaType.APPLICATION_JSON)
@Consumes(MediaType.APPLICATION_JSON)
@RunOnVirtualThread
public class ImagesResource {
    @Inject ImageService images;
    @Inject ImagePaths paths;
    @Inject DeviceManager devices;

    @POST
    @Operation(summary = "Create an empty image (qcow2 or raw)")
    public Response create(ImageRequests.Create body) throws IOException {
        if (body == null) throw ApiException.badRequest("request body is missing (expected {\"path\", \"size\", \"format\"})");
        List<ApiException.FieldError> errors = new ArrayList<>();
        if (body.path() == null || body.path().isBlank()) errors.add(new ApiException.FieldError("path", "is required"));
        long size = 0;
        if (body.size() == null) errors.add(new ApiException.FieldError("size", "is required (e.g. \"8G\")"));
        else {
            try {
                size = Sizes.parse(body.size());
                if (size <= 0 || size % 512 != 0) errors.add(new ApiException.FieldError("size", "must be a positive multiple of 512 bytes, got " + body.size()));
            } catch (IllegalArgumentException e) {
                errors.add(new ApiException.FieldError("size", e.getMessage()));
            }
        }
        ImageFormat format = ImageFormat.QCOW2;
        if (body.format() != null) {
            try {
                format = ImageFormat.parse(body.format());
                if (!format.hasFile()) throw new IllegalArgumentException(body.format());
            } catch (IllegalArgumentException e) {
                errors.add(new ApiException.FieldError("format", "unknown format '" + body.format() + "' (expected qcow2 or raw)"));
            }
        }
        if (body.clusterSize() != null) {
            int c = body.clusterSize();
            if (c < 512 || c > (2 << 20) || Integer.bitCount(c) != 1)
                errors.add(new ApiException.FieldError("clusterSize", "must be a power of two from 512 to 2097152, got " + c));
        }
        if (!errors.isEmpty()) throw ApiException.invalid(errors);
        java.nio.file.Path path = paths.creatable(body.path());
        images.create(path, format, size, body.clusterSize());
        return Response.status(201).entity(images.info(path)).build();
    }

    @GET
    @Path("/info")
    @Operation(summary = "Describe an image (qemu-img info fields)")
    public Object info(@QueryParam("path") String path) throws IOException {
        if (path == null) throw ApiException.invalid(List.of(new ApiException.FieldError("path", "query parameter is required")));
        java.nio.file.Path p = paths.existing(path);
        devices.flushIfServed(p);
        // A device of this service writes it: read it as qemu-img info -U would, just after the flush.
        if (devices.servedBy(p) != null) return ImageLock.forceShared(() -> images.info(p));
        return images.info(p);
    }

    @POST
    @Path("/check")
    @Operation(summary = "Check an image's metadata; repair leaks or all errors on images no device serves")
    public Object check(ImageRequests.Check body) throws IOException {
        if (body == null || body.path() == null)
            throw ApiException.invalid(List.of(new ApiException.FieldError("path", "is required")));
        RepairMode mode = RepairMode.NONE;
        if (body.repair() != null) {
            try {
                mode = RepairMode.valueOf(body.repair().toUpperCase(Locale.ROOT));
            } catch (IllegalArgumentException e) {
                throw ApiException.invalid(List.of(new ApiException.FieldError("repair", "unknown repair mode '" + body.repair() + "' (expected none, leaks or all)")));
            }
        }
        java.nio.file.Path p = paths.existing(body.path());
        String user = devices.servedBy(p);
        if (user != null && mode != RepairMode.NONE)
            throw ApiException.conflict(body.path() + " is served by device '" + user + "': delete the device before repairing");
        devices.flushIfServed(p);
        RepairMode m = mode;
        if (user != null) return ImageLock.forceShared(() -> images.check(p, m));
        return images.check(p, mode);
    }
}
