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
#include <structmember.h>
#include <sys/socket.h>

static PyObject *fd_name;
/* The member type whose `fd` slot offset is known (a strong reference: the cache can never
 * name a type that was freed and whose address was reused), and that offset. */
static PyTypeObject *slot_type;
static Py_ssize_t slot_offset;

/* A member's `fd`: read straight from its slot when its type keeps `fd` in __slots__ (a
 * Connection), else through getattr. -1 with an exception set on failure. */
static long
member_fd(PyObject *member)
{
    PyTypeObject *type = Py_TYPE(member);
    if (type != slot_type) {
        PyObject *descr = PyObject_GetAttr((PyObject *)type, fd_name);
        if (descr == NULL)
            PyErr_Clear();
        else {
            if (Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
                PyMemberDef *def = ((PyMemberDescrObject *)descr)->d_member;
                if (def->type == T_OBJECT_EX) {
                    Py_INCREF(type);
                    Py_XSETREF(slot_type, type);
                    slot_offset = def->offset;
                }
            }
            Py_DECREF(descr);
        }
    }
    if (type == slot_type) {
        PyObject *value = *(PyObject **)((char *)member + slot_offset);
        if (value == NULL) {
            PyErr_SetString(PyExc_AttributeError, "fd");
            return -1;
        }
        return PyLong_AsLong(value);
    }
    PyObject *value = PyObject_GetAttr(member, fd_name);
    if (value == NULL)
        return -1;
    long fd = PyLong_AsLong(value);
    Py_DECREF(value);
    return fd;
}

/* Send to one member; on a short send, note it in `left` (made when first needed). */
static int
send_one(PyObject *member, const char *buf, Py_ssize_t len, PyObject **left)
{
    long fd = member_fd(member);
    if (fd == -1 && PyErr_Occurred())
        return -1;
    Py_ssize_t sent = -1;
    if (fd >= 0) {
        ssize_t n;
        do {
            n = send((int)fd, buf, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL);
        } while (n < 0 && errno == EINTR);
        sent = n < 0 ? 0 : n;
    }
    if (sent == len)
        return 0;
    if (*left == NULL && (*left = PyList_New(0)) == NULL)
        return -1;
    PyObject *item = Py_BuildValue("(On)", member, sent);
    if (item == NULL)
        return -1;
    int failed = PyList_Append(*left, item);
    Py_DECREF(item);
    return failed;
}

/* send_all(members, frame) -> list of (member, sent) for the members not written whole:
 * sent is -1 for a member that may not be written straight away (fd < 0), else the bytes
 * the kernel took (0 when it took none: its buffer is full, or the connection failed).
 * `members` is any iterable (a room keeps a dict per format, walked without an iterator). */
static PyObject *
send_all(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "send_all(members, frame)");
        return NULL;
    }
    PyObject *members = args[0], *frame = args[1];
    if (!PyBytes_Check(frame)) {
        PyErr_SetString(PyExc_TypeError, "frame must be bytes");
        return NULL;
    }
    const char *buf = PyBytes_AS_STRING(frame);
    Py_ssize_t len = PyBytes_GET_SIZE(frame);
    PyObject *left = NULL;
    if (PyDict_CheckExact(members)) {
        Py_ssize_t pos = 0;
        PyObject *member, *value;
        Py_INCREF(members); /* (held while walking: nothing here changes it) */
        while (PyDict_Next(members, &pos, &member, &value)) {
            /* (held: a member without the slot is read through getattr, which may run code) */
            Py_INCREF(member);
            int failed = send_one(member, buf, len, &left);
            Py_DECREF(member);
            if (failed < 0) {
                Py_DECREF(members);
                goto fail;
            }
        }
        Py_DECREF(members);
    }
    else {
        PyObject *it = PyObject_GetIter(members);
        if (it == NULL)
            goto fail;
        PyObject *member;
        while ((member = PyIter_Next(it)) != NULL) {
            int failed = send_one(member, buf, len, &left);
            Py_DECREF(member);
            if (failed < 0) {
                Py_DECREF(it);
                goto fail;
            }
        }
        Py_DECREF(it);
        if (PyErr_Occurred())
            goto fail;
    }
    return left != NULL ? left : PyList_New(0);
fail:
    Py_XDECREF(left);
    return NULL;
}

static PyMethodDef methods[] = {
    {"send_all", (PyCFunction)(void (*)(void))send_all, METH_FASTCALL,
     "send_all(members, frame): send `frame` to each member's `fd`; the members not written "
     "whole, as (member, bytes sent or -1)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fanout", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__fanout(void)
{
    fd_name = PyUnicode_InternFromString("fd");
    if (fd_name == NULL)
        return NULL;
    return PyModule_Create(&module);
}
