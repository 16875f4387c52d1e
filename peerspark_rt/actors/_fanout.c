/* One room frame to many sockets: a send(2) per socket in one C loop.
 *
 * A classroom's message goes to every member's socket; per delivery the kernel's send is
 * most of the cost, and what is left is the way to it: a Python loop iteration, uvloop's
 * write (buffer checks, a write(2) through the VFS layer). Here each member whose socket may
 * be written straight away (`Connection.fd` >= 0: nothing queued for it, nothing waiting in
 * its transport, not closing) gets a send(2) with MSG_DONTWAIT; the members it could not
 * write whole come back to Python, which hands the rest to the member's transport (that
 * buffers it and says so) or queues it. See actors/connection.py.
 *
 * The descriptors are the transports' own: `Connection.fd` is set to -1 when the protocol
 * learns the transport is closing or lost, which uvloop tells it before it closes the
 * descriptor, so no send here ever reaches a descriptor that was closed and reused.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <sys/socket.h>

static PyObject *fd_name;

/* send_all(members, frame) -> list of (member, sent) for the members not written whole:
 * sent is -1 for a member that may not be written straight away (fd < 0), else the bytes
 * the kernel took (0 when it took none: its buffer is full, or the connection failed). */
static PyObject *
send_all(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "send_all(members, frame)");
        return NULL;
    }
    PyObject *frame = args[1];
    if (!PyBytes_Check(frame)) {
        PyErr_SetString(PyExc_TypeError, "frame must be bytes");
        return NULL;
    }
    const char *buf = PyBytes_AS_STRING(frame);
    Py_ssize_t len = PyBytes_GET_SIZE(frame);
    PyObject *left = PyList_New(0);
    if (left == NULL)
        return NULL;
    PyObject *it = PyObject_GetIter(args[0]);
    if (it == NULL)
        goto fail;
    PyObject *member;
    while ((member = PyIter_Next(it)) != NULL) {
        PyObject *fd_obj = PyObject_GetAttr(member, fd_name);
        long fd = -1;
        if (fd_obj != NULL) {
            fd = PyLong_AsLong(fd_obj);
            Py_DECREF(fd_obj);
        }
        if (PyErr_Occurred()) {
            Py_DECREF(member);
            goto fail;
        }
        Py_ssize_t sent = -1;
        if (fd >= 0) {
            ssize_t n;
            do {
                n = send((int)fd, buf, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL);
            } while (n < 0 && errno == EINTR);
            sent = n < 0 ? 0 : n;
        }
        if (sent != len) {
            PyObject *item = Py_BuildValue("(On)", member, sent);
            if (item == NULL || PyList_Append(left, item) < 0) {
                Py_XDECREF(item);
                Py_DECREF(member);
                goto fail;
            }
            Py_DECREF(item);
        }
        Py_DECREF(member);
    }
    if (PyErr_Occurred())
        goto fail;
    Py_DECREF(it);
    return left;
fail:
    Py_XDECREF(it);
    Py_DECREF(left);
    return NULL;
}

static PyMethodDef methods[] = {
    {"send_all", (PyCFunction)(void (*)(void))send_all, METH_FASTCALL,
     "send_all(members, frame): send `frame` to each member's `fd`; the members not written "
     "whole, as (member, bytes sent or -1)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fanout", NULL, -1, methods,
};

PyMODINIT_FUNC
PyInit__fanout(void)
{
    fd_name = PyUnicode_InternFromString("fd");
    if (fd_name == NULL)
        return NULL;
    return PyModule_Create(&module);
}
